"use strict";
// The floor: every machine of an enterprise, live (server-sent events of GET .../floor).
PW.start(async () => {
  const enterprise = await PW.enterprise();
  if (enterprise === null) return;
  const site = PW.param("site");
  const path = `/api/v1/enterprises/${enterprise}/floor` + (site ? `?site=${encodeURIComponent(site)}` : "");
  const sites = document.getElementById("sites");
  const template = document.getElementById("tile");
  const tiles = new Map();

  function tile(m) {
    let el = tiles.get(m.id);
    if (!el) {
      el = template.content.firstElementChild.cloneNode(true);
      el.dataset.machine = m.code;
      const link = el.querySelector(".machine-link");
      link.textContent = `${m.name} (${m.code})`;
      link.href = `/console/machine?enterprise=${enterprise}&site=${encodeURIComponent(m.site)}`
        + `&equipment=${encodeURIComponent(m.code)}`;
      let group = sites.querySelector(`section[data-site="${CSS.escape(m.site)}"]`);
      if (!group) {
        group = PW.element("section", { "data-site": m.site },
          PW.element("h2", { text: PW.t("floor.site", { site: m.site, zone: m.timezone }) }),
          PW.element("div", { class: "tiles" }));
        sites.append(group);
      }
      group.querySelector(".tiles").append(el);
      tiles.set(m.id, el);
    }
    return el;
  }

  function show(floor) {
    for (const m of floor.machines) {
      const el = tile(m);
      el.dataset.mode = m.mode || "";
      el.dataset.execution = m.execution || "";
      el.dataset.online = String(m.online);
      el.querySelector(".mode").textContent = m.mode ? PW.t(`mode.${m.mode}`) : "—";
      el.querySelector(".execution").textContent =
        m.execution ? PW.t(`execution.${m.execution}`) : "—";
      el.querySelector(".since").textContent = PW.time(m.execution_since, m.timezone);
      const connection = el.querySelector(".connection");
      connection.textContent = m.online ? PW.t("machine.online") : PW.t("machine.offline");
      connection.className = `connection ${m.online ? "online" : "offline"}`;
      el.querySelector(".alarm").textContent = m.alarm
        ? `${m.alarm.replace(/^Alarms?\//, "")}: ${m.alarm_value}` : PW.t("machine.no_alarm");
      el.querySelector(".parts").textContent = PW.number(m.parts);
    }
    if (!floor.machines.length) PW.status(PW.t("floor.none"));
    document.getElementById("live").textContent =
      PW.t("floor.updated", { time: PW.time(floor.at, undefined, false) });
  }

  show(await PW.api(path));
  PW.status("");
  for (;;) {  // the stream ends after a while: open it again (with the token checked again)
    try {
      await PW.stream(path, (name, data) => { if (name === "floor") show(data); });
    } catch (error) {
      if (error instanceof PW.Refused) throw error;
      document.getElementById("live").textContent = PW.t("floor.reconnecting");
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
});
