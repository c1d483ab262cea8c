// Data sharing: the catalog the enterprise offers and sees, the grant requests waiting for its
// decision, the grants it gives or holds, and the audit log with its verification; all from
// /partner/v1 with the signed-in person's token (its refusals are the page's).
"use strict";
(() => {
  const AUDIT_SHOWN = 50;
  const SUPPLIER_ACTIONS = { requested: ["approve", "reject", "revoke"],
    approved: ["revoke"], active: ["revoke"] };

  function text(tag, value, attributes) {
    return PW.element(tag, { ...(attributes || {}), text: value ?? "—" });
  }

  function enterprise(id, own) {
    return id === own ? PW.t("sharing.us") : PW.t("sharing.enterprise_ref", { id });
  }

  function fill(selector, rows, empty, columns) {
    const body = document.querySelector(`${selector} tbody`);
    body.replaceChildren(...rows);
    if (!rows.length) {
      body.append(PW.element("tr", { class: "empty" },
        PW.element("td", { colspan: columns, text: PW.t(empty) })));
    }
  }

  function buttons(grant, actions) {
    return PW.element("td", {}, ...actions.map((action) => PW.element("button", {
      type: "button", class: `button ${action}`, "data-action": action,
      "data-grant": grant.id, text: PW.t(`sharing.act.${action}`),
    })));
  }

  async function load() {
    const own = PW.me().ent ?? null;
    const [catalog, grants, audit, verdict] = await Promise.all([
      PW.api("/partner/v1/catalog", { limit: 500 }),
      PW.api("/partner/v1/grants", { limit: 500 }),
      PW.api("/partner/v1/audit", { limit: AUDIT_SHOWN, newest_first: true }),
      PW.api("/partner/v1/audit/verify"),
    ]);
    const datasets = new Map(catalog.items.map((d) => [d.id, d]));
    const datasetName = (id) => (datasets.get(id) || { code: `#${id}` }).code;

    fill("#catalog", catalog.items.map((d) => PW.element("tr", { "data-dataset": d.code },
      text("td", d.code), text("td", d.title), text("td", enterprise(d.enterprise_id, own)),
      text("td", PW.t(`sharing.kind.${d.kind}`)), text("td", PW.t(`sharing.grade.${d.grade}`)),
      text("td", PW.t(`sharing.granularity.${d.granularity}`)), text("td", d.purposes.join(", ")),
      text("td", PW.t(`sharing.visibility.${d.visibility}`)))), "sharing.no_datasets", 8);

    const mine = (g) => g.supplier_id === own;
    const waiting = grants.items.filter((g) => g.status === "requested" && mine(g));
    fill("#requests", waiting.map((g) => PW.element("tr", { "data-grant": g.id },
      text("td", `#${g.id}`), text("td", datasetName(g.dataset_id)),
      text("td", enterprise(g.partner_id, own)), text("td", g.purpose),
      text("td", PW.t(`sharing.granularity.${g.granularity}`)),
      text("td", PW.time(g.expires_at)), buttons(g, ["approve", "reject"]))),
    "sharing.no_requests", 7);

    const decided = grants.items.filter((g) => !waiting.includes(g));
    fill("#grants", decided.map((g) => PW.element("tr", { "data-grant": g.id,
      "data-status": g.status },
    text("td", `#${g.id}`), text("td", datasetName(g.dataset_id)),
    text("td", PW.t(mine(g) ? "sharing.given" : "sharing.held")),
    text("td", enterprise(mine(g) ? g.partner_id : g.supplier_id, own)),
    text("td", g.purpose), text("td", PW.t(`sharing.status.${g.status}`)),
    text("td", PW.time(g.expires_at)),
    buttons(g, mine(g) ? (SUPPLIER_ACTIONS[g.status] || []).filter((a) => a === "revoke") : []),
    )), "sharing.no_grants", 8);

    const v = document.getElementById("verification");
    v.dataset.ok = String(verdict.ok);
    v.classList.toggle("bad", !verdict.ok);
    v.textContent = verdict.ok
      ? PW.t("sharing.verified", { rows: PW.number(verdict.rows), head: verdict.head.id })
      : PW.t("sharing.broken", { entry: verdict.bad_id ?? "—", problem: verdict.problem });

    fill("#audit", audit.items.map((e) => PW.element("tr", { "data-entry": e.id,
      "data-action": e.action, "data-outcome": e.outcome },
    text("td", String(e.id)), text("td", PW.time(e.at)),
    PW.element("td", {}, PW.element("code", { text: e.action })),
    text("td", PW.t(`sharing.outcome.${e.outcome}`)),
    PW.element("td", {}, e.reason ? PW.element("code", { text: e.reason }) : "—"),
    text("td", e.grant_id ? `#${e.grant_id}` : "—"), text("td", e.client_id || "—"),
    )), "sharing.no_entries", 7);
  }

  async function act(button) {
    const { action, grant } = button.dataset;
    button.disabled = true;
    try {
      await PW.send("POST", `/partner/v1/grants/${grant}/${action}`);
      PW.status(PW.t(`sharing.done.${action}`, { grant }));
    } catch (error) {
      if (!(error instanceof PW.Refused) || error.status === 401) throw error;
      PW.status(PW.t("sharing.refused", { code: error.code, detail: error.message }), true);
    }
    await load();
  }

  PW.start(async () => {
    PW.status(PW.t("status.loading"));
    await load();
    PW.status("");
    document.getElementById("content").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) act(button).catch(PW.fail);
    });
  });
})();
