// Data sharing: the catalog the enterprise offers and sees (and, for its admins, a form to offer
// a dataset), the grant requests waiting for its decision, the grants it gives or holds (with
// the actions the partner interface lets it take on each), and the audit log page by page with
// its verification; all from /partner/v1 with the signed-in person's token (its refusals are the
// page's). The other party is named; times are in the enterprise's time zone (its first site's,
// as the enterprise listing answers it to every role that reads the enterprise), else (platform
// admins, bound to none) in the browser's.
"use strict";
(() => {
  const AUDIT_PAGE = 50;
  // what each side may do to a grant in each status (the partner interface's lifecycle):
  // the supplier's enterprise admins decide and revoke, the partner enterprise activates and
  // terminates what it holds
  const SUPPLIER_ACTIONS = { requested: ["approve", "reject", "revoke"],
    approved: ["revoke"], active: ["revoke"] };
  const PARTNER_ACTIONS = { approved: ["activate", "terminate"], active: ["terminate"] };
  const OFFER = {
    kind: ["indicators", "states", "counts", "alarms", "telemetry"],
    grade: ["general", "important", "core"],
    granularity: ["aggregated", "raw"],
    visibility: ["chain", "public", "private"],
    chain_audience: ["leader", "members"],
  };
  let own = null;
  let admin = false;
  let zone;
  let names = new Map();  // enterprise id -> name, as the catalog and grants answer them
  let auditNext = null;

  function text(tag, value, attributes) {
    return PW.element(tag, { ...(attributes || {}), text: value ?? "—" });
  }

  function party(id) {
    if (id === own) return PW.t("sharing.us");
    return names.get(id) || PW.t("sharing.enterprise_ref", { id });
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

  function auditRow(e) {
    const other = e.supplier_id === own ? e.partner_id : e.supplier_id;
    return PW.element("tr", { "data-entry": e.id, "data-action": e.action,
      "data-outcome": e.outcome },
    text("td", String(e.id)), text("td", PW.time(e.at, zone)),
    PW.element("td", {}, PW.element("code", { text: e.action })),
    text("td", PW.t(`sharing.outcome.${e.outcome}`)),
    PW.element("td", {}, e.reason ? PW.element("code", { text: e.reason }) : "—"),
    text("td", e.grant_id ? `#${e.grant_id}` : "—"),
    text("td", other ? party(other) : "—"), text("td", e.client_id || "—"));
  }

  function showAudit(page, more) {
    const body = document.querySelector("#audit tbody");
    const rows = page.items.map(auditRow);
    if (more) body.append(...rows);
    else fill("#audit", rows, "sharing.no_entries", 8);
    auditNext = page.next_cursor;
    document.getElementById("older").hidden = !auditNext;
    const shown = body.querySelectorAll("tr[data-entry]").length;
    document.getElementById("audit-count").textContent =
      PW.t("sharing.audit_shown", { n: PW.number(shown) });
  }

  async function older(button) {
    button.disabled = true;
    try {
      showAudit(await PW.api("/partner/v1/audit",
        { limit: AUDIT_PAGE, newest_first: true, cursor: auditNext }), true);
    } finally {
      button.disabled = false;
    }
  }

  async function load() {
    const [catalog, grants, audit, verdict] = await Promise.all([
      PW.api("/partner/v1/catalog", { limit: 500 }),
      PW.api("/partner/v1/grants", { limit: 500 }),
      PW.api("/partner/v1/audit", { limit: AUDIT_PAGE, newest_first: true }),
      PW.api("/partner/v1/audit/verify"),
    ]);
    names = new Map([
      ...catalog.items.map((d) => [d.enterprise_id, d.enterprise_name]),
      ...grants.items.flatMap((g) => [[g.supplier_id, g.supplier_name],
        [g.partner_id, g.partner_name]]),
    ]);
    const datasets = new Map(catalog.items.map((d) => [d.id, d]));
    const datasetName = (id) => (datasets.get(id) || { code: `#${id}` }).code;

    fill("#catalog", catalog.items.map((d) => PW.element("tr", { "data-dataset": d.code },
      text("td", d.code), text("td", d.title), text("td", party(d.enterprise_id)),
      text("td", PW.t(`sharing.kind.${d.kind}`)), text("td", PW.t(`sharing.grade.${d.grade}`)),
      text("td", PW.t(`sharing.granularity.${d.granularity}`)), text("td", d.purposes.join(", ")),
      text("td", PW.t(`sharing.visibility.${d.visibility}`)))), "sharing.no_datasets", 8);

    const mine = (g) => g.supplier_id === own;
    const waiting = grants.items.filter((g) => g.status === "requested" && mine(g));
    fill("#requests", waiting.map((g) => PW.element("tr", { "data-grant": g.id },
      text("td", `#${g.id}`), text("td", datasetName(g.dataset_id)),
      text("td", party(g.partner_id)), text("td", g.purpose),
      text("td", PW.t(`sharing.granularity.${g.granularity}`)),
      text("td", PW.time(g.expires_at, zone)),
      buttons(g, admin ? ["approve", "reject"] : []))),
    "sharing.no_requests", 7);

    const actions = (g) => (mine(g)
      ? (admin ? (SUPPLIER_ACTIONS[g.status] || []).filter((a) => a === "revoke") : [])
      : (g.partner_id === own ? PARTNER_ACTIONS[g.status] || [] : []));
    const decided = grants.items.filter((g) => !waiting.includes(g));
    fill("#grants", decided.map((g) => PW.element("tr", { "data-grant": g.id,
      "data-status": g.status },
    text("td", `#${g.id}`), text("td", datasetName(g.dataset_id)),
    text("td", PW.t(mine(g) ? "sharing.given" : "sharing.held")),
    text("td", party(mine(g) ? g.partner_id : g.supplier_id)),
    text("td", g.purpose), text("td", PW.t(`sharing.status.${g.status}`)),
    text("td", PW.time(g.expires_at, zone)), buttons(g, actions(g)),
    )), "sharing.no_grants", 8);

    const v = document.getElementById("verification");
    v.dataset.ok = String(verdict.ok);
    v.classList.toggle("bad", !verdict.ok);
    v.textContent = verdict.ok
      ? PW.t("sharing.verified", { rows: PW.number(verdict.rows), head: verdict.head.id })
      : PW.t("sharing.broken", { entry: verdict.bad_id ?? "—", problem: verdict.problem });
    showAudit(audit, false);
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

  // -- offering a dataset (the enterprise's admins) -----------------------------------------
  function offerForm() {
    const form = document.getElementById("offer");
    const field = (name) => {
      const id = `offer-${name}`;
      let input;
      if (OFFER[name]) {
        input = PW.element("select", { id, name }, ...OFFER[name].map((v) => PW.element("option",
          { value: v, text: PW.t(`sharing.${name}.${v}`) })));
      } else {
        input = PW.element("input", { id, name, type: "text", required: true });
      }
      return PW.element("label", { for: id }, PW.t(`sharing.${name}`), input);
    };
    form.querySelector(".fields").replaceChildren(...["code", "title", "kind", "domain",
      "grade", "granularity", "purposes", "visibility", "chain_audience"].map(field));
    form.elements.domain.value = "production";
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      offer(form).catch(PW.fail);
    });
  }

  async function offer(form) {
    const value = (name) => form.elements[name].value.trim();
    const body = Object.fromEntries(["code", "title", "kind", "domain", "grade", "granularity",
      "visibility", "chain_audience"].map((n) => [n, value(n)]));
    body.purposes = value("purposes").split(/[\s,;，、]+/).filter(Boolean);
    const error = form.querySelector(".error");
    error.textContent = "";
    try {
      await PW.send("POST", "/partner/v1/catalog", body);
    } catch (e) {
      if (!(e instanceof PW.Refused) || e.status === 401) throw e;
      error.textContent = PW.t("sharing.refused", { code: e.code, detail: e.message });
      return;
    }
    PW.status(PW.t("sharing.offered", { code: body.code }));
    form.reset();
    form.elements.domain.value = "production";
    await load();
  }

  PW.start(async () => {
    PW.status(PW.t("status.loading"));
    const me = PW.me();
    own = me.ent ?? null;
    admin = me.role === "enterprise_admin";
    if (own !== null) {  // times in its enterprise's zone, whatever the reader's role
      const mine = (await PW.api("/api/v1/enterprises")).find((e) => e.id === own);
      zone = mine ? mine.timezone : undefined;
    }
    await load();
    if (admin) offerForm();
    PW.status("");
    document.getElementById("content").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) act(button).catch(PW.fail);
    });
    const more = document.getElementById("older");
    more.addEventListener("click", () => older(more).catch(PW.fail));
  });
})();
