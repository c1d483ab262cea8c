// Chain, park or region: its enterprises side by side (their own indicators), how the verified
// NC rate is spread over them, which of them are connected (equipment networked), and the
// group's indicators by day, week or month, from GET /api/v1/{chains|parks|regions}/{id}/
// indicators (with ?bucket= for the trend); the groups offered are those the listings answer
// the reader (GET /api/v1/chains, /parks, /regions).
"use strict";
(() => {
  const KINDS = [["chain", "chains"], ["park", "parks"], ["region", "regions"]];
  const SIDE = ["nc_rate_declared", "nc_rate_verified", "coverage", "networking_rate"];
  const FIGURES = ["nc_rate_declared", "nc_rate_verified", "coverage", "networking_rate"];
  const BANDS = [0, 0.2, 0.4, 0.6, 0.8];  // lower bounds of the verified NC rate bands
  const SPAN_DAYS = { 1: 1, 7: 7, 30: 30 };

  function chosen(lists) {
    for (const [kind] of KINDS) {
      const asked = PW.param(kind);
      if (asked) return { kind, id: asked };
    }
    for (const [kind] of KINDS) {
      if (lists[kind].length) return { kind, id: String(lists[kind][0].id) };
    }
    return null;
  }

  function label(kind, group) {
    const name = group.name && group.code && group.name !== group.code
      ? `${group.name} (${group.code})` : String(group.name || group.code || group.id);
    return `${PW.t(`groups.kind.${kind}`)}: ${name}`;
  }

  function choices(lists, current) {
    const links = [];
    for (const [kind] of KINDS) {
      for (const g of lists[kind]) {
        const here = current && current.kind === kind && current.id === String(g.id);
        links.push(PW.element("a", { href: `/console/groups?${kind}=${encodeURIComponent(g.id)}`,
          "data-group": `${kind}:${g.id}`, "aria-current": here ? "page" : null },
        label(kind, g)));
      }
    }
    document.getElementById("groups").replaceChildren(...links.flatMap((a, i) =>
      (i ? [" · ", a] : [a])));
  }

  function byName(list) {
    return Object.fromEntries((list || []).map((i) => [i.name, i]));
  }

  PW.start(async () => {
    PW.status(PW.t("status.loading"));
    const [chains, parks, regions, enterprises] = await Promise.all([
      PW.api("/api/v1/chains"), PW.api("/api/v1/parks"), PW.api("/api/v1/regions"),
      PW.api("/api/v1/enterprises")]);
    const lists = { chain: chains, park: parks, region: regions };
    const current = chosen(lists);
    choices(lists, current);
    if (current === null) {
      document.getElementById("content").replaceChildren(
        PW.element("p", { class: "status", text: PW.t("groups.none") }));
      PW.status("");
      return;
    }
    const names = Object.fromEntries(enterprises.map((e) => [e.id, e]));
    const charts = ["side", "histogram", "trend"].map((id) => echarts.init(document.getElementById(id),
      null, { locale: PW.language === "en" ? "EN" : "ZH" }));
    addEventListener("resize", () => charts.forEach((c) => c.resize()));
    const form = document.getElementById("window");
    form.span.value = PW.param("span") || "";
    form.trend.value = PW.param("trend") ?? "day";
    const path = `/api/v1/${current.kind}s/${encodeURIComponent(current.id)}/indicators`;

    // loads asked for (the window's, the trend's): only the latest one's answer is shown
    const asked = { window: 0, trend: 0 };

    async function load() {
      const mine = ++asked.window;
      PW.status(PW.t("status.loading"));
      const report = await PW.api(path, PW.windowParams(SPAN_DAYS[form.span.value]));
      if (mine !== asked.window) return;
      const zone = report.subject.timezone || undefined;
      document.getElementById("subject").textContent = label(current.kind, report.subject);
      document.getElementById("window-text").textContent = PW.t("groups.window_text", {
        from: PW.time(report.window.from, zone), to: PW.time(report.window.to, zone) });
      show(report);
      PW.status("");
    }

    function show(report) {
      const headline = byName(report.indicators);
      document.getElementById("figures").replaceChildren(...FIGURES.filter((n) => headline[n])
        .map((n) => {
          const i = headline[n];
          return PW.element("div", { class: "figure", "data-indicator": n },
            PW.element("div", { class: "label", text: PW.t(`indicator.${n}`) }),
            PW.element("div", { class: "value", text: PW.percent(i.value) }),
            PW.element("div", { class: "label pooled", text: PW.t("groups.pooled", {
              pooled: PW.percent(i.pooled), n: PW.number(i.enterprises) }) }));
        }));

      const members = (report.members || []).map((m) => ({ id: m.id,
        name: names[m.id] ? names[m.id].name : PW.t("groups.enterprise_ref", { id: m.id }),
        code: names[m.id] ? names[m.id].code : String(m.id), values: byName(m.indicators) }));
      const value = (m, n) => (m.values[n] ? m.values[n].value : null);
      const connected = (m) => (value(m, "networking_rate") || 0) > 0;
      document.querySelector("#members tbody").replaceChildren(...members.map((m) =>
        PW.element("tr", { "data-enterprise": m.code, "data-connected": String(connected(m)) },
          PW.element("th", { scope: "row", text: m.name }),
          ...SIDE.map((n) => PW.element("td", { class: "number", "data-indicator": n,
            text: PW.percent(value(m, n)) })),
          PW.element("td", { class: connected(m) ? "online" : "offline",
            text: PW.t(connected(m) ? "groups.is_connected" : "groups.not_connected") }))));
      if (!members.length) {
        document.querySelector("#members tbody").append(PW.element("tr", {},
          PW.element("td", { colspan: SIDE.length + 2, text: PW.t("groups.no_members") })));
      }
      charts[0].setOption({
        aria: { enabled: true },
        tooltip: { trigger: "axis", valueFormatter: (v) => (v === null ? "—" : `${v}%`) },
        legend: { top: 0 },
        grid: { left: 48, right: 16, top: 40, bottom: 40 },
        xAxis: { type: "category", data: members.map((m) => m.code) },
        yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
        series: SIDE.map((n) => ({ name: PW.t(`indicator.${n}`), type: "bar",
          data: members.map((m) => (value(m, n) === null ? null
            : Math.round(value(m, n) * 1000) / 10)) })),
      }, true);

      const counts = BANDS.map(() => 0);
      let unknown = 0;
      for (const m of members) {
        const v = value(m, "nc_rate_verified");
        if (v === null) unknown += 1;
        else counts[Math.min(BANDS.length - 1, Math.floor(v * BANDS.length))] += 1;
      }
      const bands = BANDS.map((low, i) => PW.t("groups.band_range", {
        low: PW.percent(low, 0), high: PW.percent(low + 0.2, 0) }));
      document.querySelector("#distribution tbody").replaceChildren(...bands.map((b, i) =>
        PW.element("tr", { "data-band": i }, PW.element("th", { scope: "row", text: b }),
          PW.element("td", { class: "number", text: PW.number(counts[i]) }))),
      ...(unknown ? [PW.element("tr", { "data-band": "none" },
        PW.element("th", { scope: "row", text: PW.t("groups.band_none") }),
        PW.element("td", { class: "number", text: PW.number(unknown) }))] : []));
      charts[1].setOption({
        aria: { enabled: true },
        tooltip: { trigger: "axis" },
        grid: { left: 48, right: 16, top: 24, bottom: 40 },
        xAxis: { type: "category", data: bands, name: PW.t("indicator.nc_rate_verified"),
          nameLocation: "middle", nameGap: 28 },
        yAxis: { type: "value", minInterval: 1 },
        series: [{ name: PW.t("groups.enterprises"), type: "bar", data: counts }],
      }, true);

      const on = members.filter(connected);
      document.getElementById("connected-summary").textContent = PW.t("groups.connected_summary",
        { n: PW.number(on.length), total: PW.number(members.length),
          names: on.map((m) => m.name).join(PW.t("groups.list_separator")) || "—" });
    }

    // the group's indicators (mean of its enterprises) by day, week or month: chart and table
    async function loadTrend() {
      const mine = ++asked.trend;
      const bucket = form.trend.value;
      document.getElementById("trend-section").hidden = !bucket;
      if (!bucket) return;
      const params = { ...PW.windowParams(PW.TREND_DAYS[bucket]), bucket };
      const report = await PW.api(path, params);
      if (mine !== asked.trend) return;
      const zone = report.subject.timezone || undefined;
      const rows = (report.buckets || []).map((b) => [PW.period(b.from, zone, bucket), b]);
      charts[2].setOption({
        aria: { enabled: true },
        tooltip: { trigger: "axis", valueFormatter: (v) => (v === null ? "—" : `${v}%`) },
        legend: { top: 0 },
        grid: { left: 48, right: 16, top: 40, bottom: 30 },
        xAxis: { type: "category", data: rows.map(([label]) => label) },
        yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
        series: SIDE.map((n) => ({ name: PW.t(`indicator.${n}`), type: "line",
          data: rows.map(([, b]) => {
            const v = byName(b.indicators)[n];
            return v && v.value !== null ? Math.round(v.value * 1000) / 10 : null;
          }) })),
      }, true);
      charts[2].resize();  // its section may just have been shown
      document.querySelector("#trend-table tbody").replaceChildren(...rows.map(([label, b]) =>
        PW.element("tr", { "data-from": b.from },
          PW.element("th", { scope: "row", text: label }),
          ...SIDE.map((n) => PW.element("td", { class: "number", "data-indicator": n,
            text: PW.percent((byName(b.indicators)[n] || {}).value) })))));
    }

    form.addEventListener("change", () => {
      const url = new URL(location.href);
      url.searchParams.set("span", form.span.value);
      url.searchParams.set("trend", form.trend.value);
      history.replaceState(null, "", url);
      Promise.all([load(), loadTrend()]).catch(PW.fail);
    });
    await Promise.all([load(), loadTrend()]);
  });
})();
