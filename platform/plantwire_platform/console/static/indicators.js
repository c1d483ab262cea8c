"use strict";
// Indicators of an enterprise: declared vs verified NC rate, coverage, networking rate (and
// their trend by day, week or month), and why each key process counted or not, naming the
// machines that lower the verified rate, with the OEE of the enterprise, its lines and machines
// and its trend (GET .../indicators and .../indicators/explain, both with ?bucket=).
const FIGURES = ["nc_rate_declared", "nc_rate_verified", "nc_rate_time_weighted", "coverage",
  "mdi_share", "networking_rate"];
const TREND = ["nc_rate_declared", "nc_rate_verified", "coverage", "networking_rate"];
const OEE = ["oee", "availability", "performance", "quality"];

PW.start(async () => {
  const enterprise = await PW.enterprise();
  if (enterprise === null) return;
  const form = document.getElementById("window");
  form.span.value = PW.param("span") || "";
  if (PW.param("from") && PW.param("to")) {
    // the address names the window: the choice is only how to cut it, not how far back
    for (const option of form.span.options) {
      option.textContent = PW.t(`indicators.span_given.${option.value || "whole"}`);
    }
  }
  const [trend, oeeTrend] = ["trend", "oee-trend"].map((id) => echarts.init(
    document.getElementById(id), null, { locale: PW.language === "en" ? "EN" : "ZH" }));
  addEventListener("resize", () => [trend, oeeTrend].forEach((c) => c.resize()));
  const base = `/api/v1/enterprises/${encodeURIComponent(enterprise)}/indicators`;

  let asked = 0;  // loads asked for: only the latest one's answers are shown

  async function load() {
    const mine = ++asked;
    PW.status(PW.t("status.loading"));
    const span = form.span.value;
    const params = PW.windowParams(PW.TREND_DAYS[span]);
    if (span) params.bucket = span;
    const [report, x] = await Promise.all([PW.api(base, params),
      PW.api(`${base}/explain`, params).catch((error) => {
        if (!(error instanceof PW.Refused) || error.status !== 403) throw error;
        return null;  // the explanation is for the enterprise's own people
      })]);
    if (mine !== asked) return;
    const zone = report.subject.timezone;
    document.getElementById("subject").textContent =
      `${report.subject.name} (${report.subject.code})`;
    document.getElementById("window-text").textContent = PW.t("indicators.window_text", {
      from: PW.time(report.window.from, zone), to: PW.time(report.window.to, zone),
    });
    figures(report);
    drawTrend(report, zone, span);
    if (x) {
      explain(x);
      drawOee(x, zone, span);
    } else {
      document.getElementById("explanation").replaceChildren(
        PW.element("p", { class: "status", text: PW.t("indicators.no_explanation") }));
    }
    PW.status("");
  }

  function figures(report) {
    const by = Object.fromEntries(report.indicators.map((i) => [i.name, i]));
    document.getElementById("figures").replaceChildren(...FIGURES.filter((n) => by[n]).map((n) => {
      const i = by[n];
      const ratio = i.denominator !== undefined && i.denominator !== null && n !== "mdi_share"
        ? PW.t("indicators.ratio", { n: PW.number(i.numerator, 2), d: PW.number(i.denominator, 2) })
        : "";
      return PW.element("div", { class: "figure", "data-indicator": n },
        PW.element("div", { class: "label", text: PW.t(`indicator.${n}`) }),
        PW.element("div", { class: "value", text: PW.percent(i.value) }),
        PW.element("div", { class: "label ratio", text: ratio }));
    }));
  }

  function percentOf(value) {
    return value === null || value === undefined ? null : Math.round(value * 1000) / 10;
  }

  function drawTrend(report, zone, span) {
    const buckets = report.buckets || [];
    const labels = buckets.length ? buckets.map((b) => PW.period(b.from, zone, span))
      : [PW.t("indicators.this_window")];
    const rows = buckets.length ? buckets.map((b) => b.indicators) : [report.indicators];
    const series = TREND.map((name) => ({
      name: PW.t(`indicator.${name}`), type: buckets.length ? "line" : "bar",
      data: rows.map((list) => percentOf((list.find((i) => i.name === name) || {}).value)),
    }));
    trend.setOption({
      aria: { enabled: true },
      tooltip: { trigger: "axis", valueFormatter: (v) => (v === null ? "—" : `${v}%`) },
      legend: { top: 0 },
      grid: { left: 50, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: labels },
      yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
      series,
    }, true);
  }

  // the enterprise's OEE and its factors for each bucket (or the whole window), chart and table
  function drawOee(x, zone, span) {
    const rows = x.buckets ? x.buckets.map((b) => [PW.period(b.from, zone, span), b])
      : [[PW.t("indicators.this_window"), { from: x.window.from, oee: x.oee }]];
    oeeTrend.setOption({
      aria: { enabled: true },
      tooltip: { trigger: "axis", valueFormatter: (v) => (v === null ? "—" : `${v}%`) },
      legend: { top: 0 },
      grid: { left: 50, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: rows.map(([label]) => label) },
      yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
      series: OEE.map((k) => ({ name: PW.t(`oee.${k}`), type: x.buckets ? "line" : "bar",
        data: rows.map(([, b]) => percentOf(b.oee[k])) })),
    }, true);
    document.querySelector("#oee-buckets tbody").replaceChildren(...rows.map(([label, b]) =>
      PW.element("tr", { "data-from": b.from },
        PW.element("th", { scope: "row", text: label }),
        ...OEE.map((k) => PW.element("td", { class: "number", "data-factor": k,
          text: PW.percent(b.oee[k]) })))));
  }

  function reason(p, thresholds) {
    if (!p.declared_nc) return PW.t("reason.not_nc");
    if (!p.covered) {
      return PW.t("reason.not_covered", { coverage: PW.percent(p.coverage, 0),
        min: PW.percent(thresholds.coverage_min, 0) });
    }
    if (!p.verified_nc) {
      return PW.t("reason.manual", { auto: PW.percent(p.auto_share ?? 0, 0),
        min: PW.percent(thresholds.auto_share_min, 0) });
    }
    return PW.t("reason.verified", { auto: PW.percent(p.auto_share, 0) });
  }

  function explain(x) {
    const segment = x.segments[x.segments.length - 1];
    const processes = segment ? segment.key_processes : [];
    const yes = (v) => (v ? PW.t("answer.yes") : PW.t("answer.no"));
    const lowering = processes.filter((p) => p.declared_nc && !p.verified_nc);
    document.getElementById("lowering").textContent = lowering.length
      ? PW.t("indicators.lowering", { list: lowering.map((p) =>
        `${p.equipment.join(", ")} (${p.process} ${p.name})`).join(PW.t("list.separator")) })
      : PW.t("indicators.none_lowering");
    document.querySelector("#processes tbody").replaceChildren(...processes.map((p) =>
      PW.element("tr", { "data-process": p.process, class: lowering.includes(p) ? "lowers" : null },
        PW.element("td", { text: p.process }),
        PW.element("td", { text: p.name }),
        PW.element("td", { text: p.equipment.join(", ") || "—" }),
        PW.element("td", { text: yes(p.declared_nc) }),
        PW.element("td", { class: "number", text: PW.percent(p.coverage) }),
        PW.element("td", { class: "number", text: PW.percent(p.auto_share) }),
        PW.element("td", { class: "number", text: PW.percent(p.mdi_share) }),
        PW.element("td", { class: "verdict", text: yes(p.verified_nc) }),
        PW.element("td", { text: reason(p, x.thresholds) }))));
    const oee = [
      [PW.t("oee.enterprise"), x.oee],
      ...Object.values(x.lines).map((o) =>
        [PW.t("oee.line", { line: o.line, site: o.site }), o]),
      ...x.equipment.map((e) => [PW.t("oee.machine", { equipment: e.equipment, site: e.site }),
        e.oee]),
    ];
    document.querySelector("#oee tbody").replaceChildren(...oee.map(([name, o]) =>
      PW.element("tr", {},
        PW.element("th", { scope: "row", text: name }),
        ...["availability", "performance", "quality", "oee"].map((k) =>
          PW.element("td", { class: "number", text: PW.percent(o[k]) })))));
  }

  form.addEventListener("change", () => {
    const url = new URL(location.href);
    if (form.span.value) url.searchParams.set("span", form.span.value);
    else url.searchParams.delete("span");
    history.replaceState(null, "", url);
    load().catch(PW.fail);
  });
  await load();
});
