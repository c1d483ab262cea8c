"use strict";
// One machine: its state timeline (ECharts, Gantt-style), a metric over the chosen window,
// its sessions and clock offset, from GET .../equipment/{code}/history.
const COLORS = {
  EXECUTING: "#1a7f37", PAUSED: "#bf8700", IDLE: "#d4a72c", FAULT: "#cf222e", OFF: "#6e7781",
  NO_DATA: "#afb8c1", AUTO: "#0b5cad", SEMI_AUTO: "#54aeff", MDI: "#8250df", MANUAL: "#e16f24",
  SETUP: "#bc4c00", SERVICE: "#953800", UNKNOWN: "#afb8c1",
};

PW.start(async () => {
  const enterprise = PW.param("enterprise");
  const site = PW.param("site");
  const code = PW.param("equipment");
  if (!enterprise || !site || !code) {
    PW.refuse({ code: "not_found" });
    return;
  }
  const form = document.getElementById("window");
  form.hours.value = PW.param("hours") || "1";
  form.metric.append(PW.element("option", { value: PW.param("metric") || "" }));
  form.metric.value = PW.param("metric") || "";
  const locale = PW.language === "en" ? "EN" : "ZH";
  const timeline = echarts.init(document.getElementById("timeline"), null, { locale });
  const metrics = echarts.init(document.getElementById("metrics"), null, { locale });
  addEventListener("resize", () => { timeline.resize(); metrics.resize(); });
  const path = `/api/v1/enterprises/${encodeURIComponent(enterprise)}/sites/`
    + `${encodeURIComponent(site)}/equipment/${encodeURIComponent(code)}/history`;

  async function load() {
    PW.status(PW.t("status.loading"));
    const end = new Date();
    const start = new Date(end.getTime() - Number(form.hours.value) * 3600e3);
    const params = new URLSearchParams({ from: start.toISOString(), to: end.toISOString() });
    if (form.metric.value) params.append("metric", form.metric.value);
    const h = await PW.api(path, params);
    const zone = h.equipment.timezone;
    document.getElementById("machine-name").textContent =
      `${h.equipment.name} (${h.equipment.code}) · ${h.equipment.site}`
      + (h.equipment.line ? ` · ${h.equipment.line}` : "");
    document.title = `${h.equipment.name} · plantwire`;
    const chosen = form.metric.value;
    form.metric.replaceChildren(PW.element("option", { value: "" }, "—"),
      ...h.metrics.map((m) => PW.element("option", { value: m }, m)));
    form.metric.value = chosen;
    drawTimeline(h, zone, start, end);
    drawMetric(h, zone, start, end);
    const clock = h.clock.offset_s;
    document.getElementById("clock").textContent = clock === null ? PW.t("machine.clock_unknown")
      : PW.t("unit.seconds", { value: PW.number(clock, 3) });
    const open = h.sessions.some((s) => s.offline_at === null);
    document.getElementById("online").textContent =
      open ? PW.t("machine.online") : PW.t("machine.offline");
    const body = document.querySelector("#sessions tbody");
    body.replaceChildren(...h.sessions.map((s) => {
      const until = s.offline_at ? new Date(s.offline_at) : new Date();
      const minutes = (until - new Date(s.online_at)) / 60e3;
      return PW.element("tr", {},
        PW.element("td", { text: PW.time(s.online_at, zone) }),
        PW.element("td", { text: s.offline_at ? PW.time(s.offline_at, zone) : PW.t("session.open") }),
        PW.element("td", { class: "number", text: PW.t("unit.minutes", { value: PW.number(minutes, 1) }) }));
    }));
    PW.status(h.sessions.length ? "" : PW.t("machine.no_sessions"));
  }

  function axis(zone, start, end) {
    return {
      type: "time", min: start.getTime(), max: end.getTime(),
      axisLabel: { formatter: (v) => PW.time(new Date(v).toISOString(), zone, false) },
    };
  }

  function drawTimeline(h, zone, start, end) {
    const rows = [PW.t("machine.mode"), PW.t("machine.execution")];
    const data = [];
    [h.mode, h.execution].forEach((intervals, row) => {
      for (const i of intervals) {
        const a = Math.max(new Date(i.start).getTime(), start.getTime());
        const b = Math.min(i.end ? new Date(i.end).getTime() : end.getTime(), end.getTime());
        const label = i.value ? PW.t(`${row ? "execution" : "mode"}.${i.value}`) : "—";
        data.push({ value: [row, a, b, label], itemStyle: { color: COLORS[i.value] || "#999" } });
      }
    });
    timeline.setOption({
      aria: { enabled: true },
      tooltip: {
        formatter: (p) => `${p.value[3]}<br>${PW.time(new Date(p.value[1]).toISOString(), zone)}`
          + ` – ${PW.time(new Date(p.value[2]).toISOString(), zone)}`,
      },
      grid: { left: 90, right: 20, top: 10, bottom: 30 },
      xAxis: axis(zone, start, end),
      yAxis: { type: "category", data: rows, inverse: true },
      series: [{
        type: "custom", encode: { x: [1, 2], y: 0 }, data,
        renderItem: (params, api) => {
          const from = api.coord([api.value(1), api.value(0)]);
          const to = api.coord([api.value(2), api.value(0)]);
          const height = api.size([0, 1])[1] * 0.6;
          return {
            type: "rect", style: api.style(),
            shape: echarts.graphic.clipRectByRect(
              { x: from[0], y: from[1] - height / 2, width: Math.max(to[0] - from[0], 1), height },
              { x: params.coordSys.x, y: params.coordSys.y, width: params.coordSys.width,
                height: params.coordSys.height }),
          };
        },
      }],
    }, true);
  }

  function drawMetric(h, zone, start, end) {
    const series = h.series.map((s) => ({
      name: s.metric, type: "line", showSymbol: false,
      data: s.points.map((p) => [new Date(p.ts).getTime(), p.value]),
    }));
    metrics.setOption({
      aria: { enabled: true },
      tooltip: { trigger: "axis" },
      legend: { show: series.length > 0 },
      title: series.length ? undefined : { text: PW.t("machine.choose_metric"), left: "center",
        top: "middle", textStyle: { fontSize: 14, color: "#5b6675" } },
      grid: { left: 60, right: 20, top: 30, bottom: 30 },
      xAxis: axis(zone, start, end),
      yAxis: { type: "value" },
      series,
    }, true);
  }

  form.addEventListener("change", () => {
    // the choice stays in the address: a reload or a switch of language keeps it
    const url = new URL(location.href);
    url.searchParams.set("hours", form.hours.value);
    if (form.metric.value) url.searchParams.set("metric", form.metric.value);
    else url.searchParams.delete("metric");
    history.replaceState(null, "", url);
    load().catch(PW.fail);
  });
  await load();
  setInterval(() => load().catch(PW.fail), 30000);
});
