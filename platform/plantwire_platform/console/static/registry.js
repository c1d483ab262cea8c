// Registry of an enterprise: its sites (with their gateway), lines, process steps (key ones
// with why) and equipment, from GET .../registry?format=json; its admins add (POST) and change
// (PATCH) one entry at a time and import an equipment sheet (PUT .../registry/equipment, CSV).
// The API checks every edit against the whole enterprise; its refusals are shown as it says them.
// Its admins also issue a gateway's broker login (shown once: the config and the broker's CA to
// copy or download) and revoke it, through .../gateways/{edge_node}/credential and /revoke.
"use strict";
(() => {
  const CONTROL_TYPES = ["CNC", "PLC", "DCS", "ROBOT", "MANUAL"];
  // per kind: the codes that place an entry, its fields (name, input type) and its columns
  const KINDS = {
    site: { place: [], fields: [["code", "text"], ["name", "text"], ["timezone", "text"],
      ["edge_node", "text"], ["shifts", "text"]] },
    line: { place: ["site"], fields: [["code", "text"], ["name", "text"]] },
    process: { place: ["site", "line"], fields: [["code", "text"], ["name", "text"],
      ["is_key", "checkbox"], ["key_reason", "text"]], extra: ["equipment"] },
    equipment: { place: ["site", "line"], fields: [["code", "text"], ["name", "text"],
      ["control_type", "select"], ["declared_nc", "checkbox"], ["ideal_cycle_s", "number"],
      ["processes", "list"]] },
  };
  let enterprise = null;
  let registry = null;
  let editable = false;

  function collection(kind, where) {
    const base = `/api/v1/enterprises/${encodeURIComponent(enterprise)}/sites`;
    const e = encodeURIComponent;
    if (kind === "site") return base;
    if (kind === "line") return `${base}/${e(where.site)}/lines`;
    if (kind === "process") return `${base}/${e(where.site)}/lines/${e(where.line)}/processes`;
    return `${base}/${e(where.site)}/equipment`;
  }

  // every entry of a kind as a flat record: its place, its fields, and what it is as exported
  function entries(kind) {
    const found = [];
    for (const site of registry.sites || []) {
      if (kind === "site") found.push({ ...site });
      for (const line of site.lines || []) {
        if (kind === "line") found.push({ site: site.code, ...line });
        for (const p of line.processes || []) {
          if (kind === "process") found.push({ site: site.code, line: line.code, ...p });
        }
      }
      for (const m of site.equipment || []) {
        if (kind !== "equipment") continue;
        const line = (site.lines || []).find((l) => l.code === m.line) || { processes: [] };
        const processes = (line.processes || []).filter((p) => (p.equipment || []).includes(m.code))
          .map((p) => p.code);
        found.push({ site: site.code, ...m, processes });
      }
    }
    return found;
  }

  function shown(value) {
    if (value === true) return PW.t("registry.yes");
    if (value === false) return PW.t("registry.no");
    if (Array.isArray(value)) return value.length ? value.join(" ") : "—";
    if (typeof value === "number") return PW.number(value, 2);
    return value === undefined || value === null || value === "" ? "—" : String(value);
  }

  function table(kind) {
    const spec = KINDS[kind];
    const columns = [...spec.place, ...spec.fields.map(([n]) => n), ...(spec.extra || [])];
    const el = document.getElementById(`${kind}-table`);
    el.querySelector("thead tr").replaceChildren(
      ...columns.map((c) => PW.element("th", { scope: "col", text: PW.t(`registry.field.${c}`) })),
      ...(editable ? [PW.element("th", { scope: "col", text: PW.t("registry.edit") })] : []));
    const rows = entries(kind).map((entry) => PW.element("tr",
      { "data-code": entry.code, "data-site": entry.site || entry.code },
      ...columns.map((c) => PW.element("td", { "data-field": c, text: shown(entry[c]) })),
      ...(editable ? [PW.element("td", {}, PW.element("button", { type: "button", class: "edit",
        "aria-label": `${PW.t("registry.edit")} ${entry.code}`, text: PW.t("registry.edit") }))]
        : [])));
    rows.forEach((row, i) => {
      const button = row.querySelector("button.edit");
      if (button) button.addEventListener("click", () => open(kind, entries(kind)[i]));
    });
    el.querySelector("tbody").replaceChildren(...rows);
    if (!rows.length) {
      el.querySelector("tbody").append(PW.element("tr", { class: "empty" }, PW.element("td",
        { colspan: columns.length + 1, text: PW.t("registry.none") })));
    }
  }

  // the line codes of a site (the line field offers those of the site chosen)
  function linesOf(site) {
    const found = (registry.sites || []).find((s) => s.code === site);
    return found ? (found.lines || []).map((l) => l.code) : [];
  }

  function choices(select, options) {
    select.replaceChildren(...options.map((o) => PW.element("option", { value: o, text: o })));
  }

  function input(kind, name, type, entry) {
    const id = `${kind}-${name}`;
    const value = entry ? entry[name] : undefined;
    let field;
    if (type === "select" || KINDS[kind].place.includes(name)) {
      const options = name === "control_type" ? CONTROL_TYPES
        : name === "site" ? (registry.sites || []).map((s) => s.code)
          : linesOf(entry ? entry.site : ((registry.sites || [])[0] || {}).code);
      field = PW.element("select", { id, name });
      choices(field, options);
      if (value !== undefined) field.value = value;
    } else {
      field = PW.element("input", { id, name, type: type === "list" ? "text" : type,
        step: type === "number" ? "any" : null });
      if (type === "checkbox") field.checked = Boolean(value);
      else if (value !== undefined && value !== null) {
        field.value = Array.isArray(value) ? value.join(" ") : String(value);
      }
    }
    const locked = entry && (name === "code" || KINDS[kind].place.includes(name));
    if (locked) field.disabled = true;
    const label = PW.element("label", { for: id, class: type === "checkbox" ? "check" : null });
    if (type === "checkbox") label.append(field, PW.t(`registry.field.${name}`));
    else label.append(PW.t(`registry.field.${name}`), field);
    return label;
  }

  function open(kind, entry) {
    const spec = KINDS[kind];
    const form = document.getElementById(`form-${kind}`);
    form.hidden = false;
    form.dataset.mode = entry ? "change" : "add";
    form.dataset.code = entry ? entry.code : "";
    form.querySelector(".mode").textContent = entry
      ? PW.t("registry.changing", { code: entry.code }) : PW.t(`registry.add.${kind}`);
    form.querySelector("button[type=submit]").textContent =
      PW.t(entry ? "registry.save" : "registry.add");
    form.querySelector(".cancel").hidden = !entry;
    form.querySelector(".error").textContent = "";
    form.querySelector(".fields").replaceChildren(
      ...spec.place.map((n) => input(kind, n, "select", entry)),
      ...spec.fields.map(([n, type]) => input(kind, n, type, entry)));
    const site = form.elements.site;
    const line = form.elements.line;
    if (site && line && !entry) {
      site.addEventListener("change", () => choices(line, linesOf(site.value)));
    }
    form.original = entry || null;
    if (entry) form.querySelector("input:not([disabled]), select:not([disabled])").focus();
  }

  function read(form, kind) {
    const values = {};
    for (const [name, type] of KINDS[kind].fields) {
      const field = form.elements[name];
      if (type === "checkbox") values[name] = field.checked;
      else if (type === "number") values[name] = field.value === "" ? null : Number(field.value);
      else if (type === "list") values[name] = field.value.split(/[\s;,]+/).filter(Boolean);
      else values[name] = field.value.trim();
    }
    return values;
  }

  async function submit(form) {
    const kind = form.dataset.kind;
    const values = read(form, kind);
    const where = Object.fromEntries(KINDS[kind].place.map((n) => [n, form.elements[n].value]));
    const original = form.original;
    let path = collection(kind, original || where);
    let body;
    if (original) {
      path += `/${encodeURIComponent(original.code)}`;
      body = {};
      for (const [name, value] of Object.entries(values)) {
        if (name === "code") continue;
        const norm = (v) => (v === "" || v === undefined || v === null
          ? (typeof value === "boolean" ? false : null) : v);
        if (JSON.stringify(norm(original[name])) !== JSON.stringify(norm(value))) {
          body[name] = value;
        }
      }
    } else {
      body = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== "" && v !== null));
      if (kind === "equipment") body.line = where.line;
    }
    try {
      await PW.send(original ? "PATCH" : "POST", path, body);
    } catch (error) {
      if (!(error instanceof PW.Refused) || error.status === 401) throw error;
      form.querySelector(".error").textContent =
        PW.t("registry.refused", { code: error.code, detail: error.message });
      return;
    }
    PW.status(PW.t(original ? "registry.changed" : "registry.added", { code: values.code
      || original.code }));
    await load();
    open(kind, null);
  }

  async function importSheet(form) {
    const file = form.elements.sheet.files[0];
    const problems = document.getElementById("problems");
    problems.hidden = true;
    form.querySelector(".error").textContent = "";
    if (!file) {
      form.querySelector(".error").textContent = PW.t("registry.no_file");
      return;
    }
    try {
      const done = await PW.send("PUT",
        `/api/v1/enterprises/${encodeURIComponent(enterprise)}/registry/equipment`,
        await file.text(), null, "text/csv");
      PW.status(PW.t("registry.imported", { equipment: PW.number(done.equipment) }));
    } catch (error) {
      if (!(error instanceof PW.Refused) || error.status === 401) throw error;
      let found = null;
      try {
        found = JSON.parse(error.message);
      } catch (e) {
        found = null;
      }
      if (Array.isArray(found)) {
        problems.querySelector("tbody").replaceChildren(...found.map((p) => PW.element("tr",
          { "data-row": p.row, "data-field": p.field }, PW.element("td", { text: String(p.row) }),
          PW.element("td", { text: p.field }), PW.element("td", { text: p.message }))));
        problems.hidden = false;
      }
      form.querySelector(".error").textContent = PW.t("registry.import_refused",
        { code: error.code });
      return;
    }
    form.reset();
    await load();
  }

  async function load() {
    const base = `/api/v1/enterprises/${encodeURIComponent(enterprise)}`;
    const [doc, gateways] = await Promise.all([
      PW.api(`${base}/registry`, { format: "json" }), PW.api(`${base}/gateways`)]);
    registry = doc;
    document.getElementById("subject").textContent = `${doc.name} (${doc.code})`;
    for (const kind of Object.keys(KINDS)) table(kind);
    const zones = Object.fromEntries((doc.sites || []).map((site) => [site.code, site.timezone]));
    document.querySelector("#gateways tbody").replaceChildren(...gateways.map((g) =>
      PW.element("tr", { "data-edge-node": g.edge_node, "data-credential": g.credential },
        PW.element("td", { text: g.site }), PW.element("td", { text: g.edge_node }),
        PW.element("td", { text: g.username }),
        PW.element("td", { text: PW.t(`registry.credential.${g.credential}`) }),
        PW.element("td", { text: PW.time(g.revoked_at || g.issued_at, zones[g.site]) }),
        ...(editable ? [gatewayActions(g)] : []))));
  }

  // -- a gateway's broker login (its admins) ----------------------------------------------
  function gatewayPath(g, action) {
    return `/api/v1/enterprises/${encodeURIComponent(enterprise)}/gateways/`
      + `${encodeURIComponent(g.edge_node)}/${action}`;
  }

  function gatewayActions(g) {
    const cell = PW.element("td", { class: "actions" });
    const offer = () => {
      if (g.credential === "issued") {
        const revoke = PW.element("button", { type: "button", class: "edit",
          "data-action": "revoke", text: PW.t("registry.gateway.revoke") });
        revoke.addEventListener("click", () => confirmRevoke());
        cell.replaceChildren(revoke);
      } else {
        const issue = PW.element("button", { type: "button", class: "edit",
          "data-action": "issue", text: PW.t("registry.gateway.issue") });
        issue.addEventListener("click", () => issueLogin(g, issue).catch(PW.fail));
        cell.replaceChildren(issue);
      }
    };
    const confirmRevoke = () => {
      const yes = PW.element("button", { type: "button", class: "button danger",
        "data-action": "confirm-revoke", text: PW.t("registry.gateway.revoke") });
      const no = PW.element("button", { type: "button", class: "link-dark",
        "data-action": "cancel", text: PW.t("registry.cancel") });
      yes.addEventListener("click", () => revokeLogin(g, yes).catch(PW.fail));
      no.addEventListener("click", offer);
      cell.replaceChildren(PW.element("p", { class: "confirm", role: "alert",
        text: PW.t("registry.gateway.revoke_confirm", { gateway: g.edge_node }) }), yes, " ", no);
      no.focus();
    };
    offer();
    return cell;
  }

  function gatewayRefused(error) {
    if (!(error instanceof PW.Refused) || error.status === 401) throw error;
    document.getElementById("gateway-error").textContent =
      PW.t("registry.refused", { code: error.code, detail: error.message });
  }

  async function issueLogin(g, button) {
    button.disabled = true;
    document.getElementById("gateway-error").textContent = "";
    let issued;
    try {
      issued = await PW.send("POST", gatewayPath(g, "credential"));
    } catch (error) {
      button.disabled = false;
      gatewayRefused(error);
      return;
    }
    showIssued(issued);
    PW.status(PW.t("registry.gateway.issued", { gateway: g.edge_node }));
    await load();
  }

  async function revokeLogin(g, button) {
    button.disabled = true;
    document.getElementById("gateway-error").textContent = "";
    try {
      await PW.send("POST", gatewayPath(g, "revoke"));
    } catch (error) {
      gatewayRefused(error);
      await load();
      return;
    }
    PW.status(PW.t("registry.gateway.revoked", { gateway: g.edge_node }));
    await load();
  }

  // the login just issued, once: its config and the broker's CA to copy or download; "Done"
  // takes them off the page
  function showIssued(issued) {
    const panel = document.getElementById("issued");
    const urls = [];
    const file = (key, id, text, name) => {
      const area = PW.element("textarea", { id, readonly: true, rows: 8, spellcheck: "false" });
      area.value = text;
      const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
      urls.push(url);
      const copy = PW.element("button", { type: "button", class: "link-dark", "data-copy": id,
        text: PW.t("registry.gateway.copy") });
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(text);
          PW.status(PW.t("registry.gateway.copied"));
        } catch (e) {  // no clipboard here: select it for the reader to copy
          area.select();
          PW.status(PW.t("registry.gateway.select_to_copy"));
        }
      });
      return PW.element("div", { class: "issued-file" },
        PW.element("label", { for: id, text: PW.t(key) }), area,
        PW.element("div", {}, copy, " ", PW.element("a", { href: url, download: name,
          "data-download": id, class: "link-dark", text: PW.t("registry.gateway.download",
            { file: name }) })));
    };
    const done = PW.element("button", { type: "button", "data-action": "done",
      text: PW.t("registry.gateway.done") });
    done.addEventListener("click", () => {
      urls.forEach((u) => URL.revokeObjectURL(u));
      panel.replaceChildren();
      panel.hidden = true;
    });
    panel.replaceChildren(
      PW.element("h3", { text: PW.t("registry.gateway.issued_title",
        { gateway: issued.edge_node_id }) }),
      PW.element("p", { class: "error", text: PW.t("registry.gateway.once") }),
      PW.element("dl", {},
        PW.element("dt", { text: PW.t("registry.gateway.username") }),
        PW.element("dd", {}, PW.element("code", { id: "issued-username", text: issued.username })),
        PW.element("dt", { text: PW.t("registry.gateway.password") }),
        PW.element("dd", {}, PW.element("code", { id: "issued-password", text: issued.password }))),
      file("registry.gateway.config", "issued-config", issued.config,
        `${issued.edge_node_id}.toml`),
      file("registry.gateway.ca", "issued-ca", issued.ca_certificate, "ca.crt"),
      done);
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
  }

  PW.start(async () => {
    enterprise = await PW.enterprise();
    if (enterprise === null) return;
    PW.status(PW.t("status.loading"));
    editable = ["enterprise_admin", "platform_admin"].includes(PW.me().role);
    await load();
    document.getElementById("read-only").hidden = editable;
    document.querySelector("#gateways th.manage").hidden = !editable;
    for (const kind of Object.keys(KINDS)) {
      const form = document.getElementById(`form-${kind}`);
      form.hidden = !editable;
      if (!editable) continue;
      open(kind, null);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        submit(form).catch(PW.fail);
      });
      form.querySelector(".cancel").addEventListener("click", () => open(kind, null));
    }
    const sheet = document.getElementById("import");
    sheet.hidden = !editable;
    sheet.addEventListener("submit", (event) => {
      event.preventDefault();
      importSheet(sheet).catch(PW.fail);
    });
    PW.status("");
  });
})();
