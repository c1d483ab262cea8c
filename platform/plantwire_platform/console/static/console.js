// plantwire console: what every page shares. The page's words come in #boot (the server chose
// the language); data comes from /api/v1 with the signed-in person's token, and a refusal of
// the API shows the refusal view instead of data.
"use strict";

const PW = (() => {
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const language = boot.language;
  const KEY = "plantwire.session";
  const OPEN = "plantwire.session.open";  // a session cookie was set (the cookie is httpOnly)

  function t(key, values) {
    const text = boot.messages[key];
    if (text === undefined) {
      console.warn(`plantwire: no message ${key}`);
      return key;
    }
    return text.replace(/\{(\w+)\}/g, (m, name) =>
      values && values[name] !== undefined ? String(values[name]) : m);
  }

  // -- the session: a token from POST /auth/token, kept for this tab only; while the page
  // is in use, POST /auth/refresh trades the session's httpOnly cookie for the next one --
  function session() {
    try {
      const s = JSON.parse(sessionStorage.getItem(KEY) || "null");
      return s && s.expires > Date.now() ? s : null;
    } catch (e) {
      return null;
    }
  }

  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch (e) {
      return {};
    }
  }

  function keep(answer, username) {
    const c = claims(answer.access_token);
    sessionStorage.setItem(KEY, JSON.stringify({
      token: answer.access_token,
      expires: Date.now() + (answer.expires_in - 5) * 1000,
      life: answer.expires_in * 1000,
      username: username || c.sub || "", role: c.role || "",
    }));
    localStorage.setItem(OPEN, "1");
  }

  async function signIn(username, password) {
    const body = new URLSearchParams({ grant_type: "password", username, password,
      session: "cookie" });
    const r = await fetch("/auth/token", { method: "POST", body,
      headers: { "Accept-Language": language } });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) {
      const error = new Error(answer.detail || r.statusText);
      error.code = answer.error || String(r.status);
      throw error;
    }
    keep(answer, username);
  }

  // One refresh at a time in this tab (each refresh token is good once); a refresh answered
  // 409 because another tab had just used the token is tried again with the cookie that tab
  // received. Without a session (never signed in here, or it ended) nothing is asked.
  let refreshing = null;
  function refresh() {
    if (!localStorage.getItem(OPEN)) return Promise.resolve(false);
    if (!refreshing) {
      refreshing = (async () => {
        for (let attempt = 0; attempt < 3; attempt += 1) {
          const r = await fetch("/auth/refresh", { method: "POST",
            headers: { "Accept-Language": language } });
          if (r.ok) {
            keep(await r.json());
            return true;
          }
          if (r.status !== 409) break;
          await new Promise((done) => setTimeout(done, 300));
        }
        sessionStorage.removeItem(KEY);
        localStorage.removeItem(OPEN);
        return false;
      })().finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  // A token with at least 30 s (a third of its lifetime, if shorter) to live, refreshed when it
  // has less; null without a session.
  async function token() {
    const s = session();
    if (s && s.expires - Date.now() > Math.min(30000, (s.life || 0) / 3)) return s.token;
    return (await refresh()) ? session().token : null;
  }

  async function signOut() {
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(OPEN);
    await fetch("/auth/signout", { method: "POST" }).catch(() => null);
    goSignIn();
  }

  function goSignIn() {
    const next = location.pathname + location.search;
    location.assign(`/console/signin?next=${encodeURIComponent(next)}`);
  }

  // -- the API ----------------------------------------------------------------------------
  class Refused extends Error {
    constructor(status, code, detail) {
      super(detail || code);
      this.status = status;
      this.code = code;
    }
  }

  function signedOut() {
    sessionStorage.removeItem(KEY);
    goSignIn();
    return new Refused(401, "invalid_token", "");
  }

  async function headers(extra) {
    const bearer = await token();
    if (!bearer) throw signedOut();
    return { Authorization: `Bearer ${bearer}`, "Accept-Language": language, ...extra };
  }

  // fetch with the session's token; a 401 (the token revoked or run out meanwhile) is
  // answered by one refresh and one more try, then by the sign-in page.
  async function call(path, init, extra) {
    let r = await fetch(path, { ...init, headers: await headers(extra) });
    if (r.status === 401 && await refresh()) {
      r = await fetch(path, { ...init, headers: await headers(extra) });
    }
    if (r.status === 401) throw signedOut();
    return r;
  }

  async function api(path, params) {
    const query = params ? `?${new URLSearchParams(params)}` : "";
    const r = await call(path + query, {}, { Accept: "application/json" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Refused(r.status, body.error || String(r.status), body.detail);
    return body;
  }

  // A change through the API (POST / PATCH / PUT with a JSON or text body): the answer's
  // body, or a Refused with the API's reason code and detail.
  async function send(method, path, body, params, contentType) {
    const query = params ? `?${new URLSearchParams(params)}` : "";
    const type = contentType || "application/json";
    const payload = body === undefined ? undefined
      : (type === "application/json" ? JSON.stringify(body) : body);
    const r = await call(path + query, { method, body: payload },
      { Accept: "application/json", "Content-Type": type });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) {
      const detail = typeof answer.detail === "string" ? answer.detail
        : JSON.stringify(answer.detail ?? "");
      throw new Refused(r.status, answer.error || String(r.status), detail);
    }
    return answer;
  }

  // What the signed-in person's token says: role, enterprise (ent), park, region.
  function me() {
    const s = session();
    return s ? claims(s.token) : {};
  }

  // Server-sent events over fetch (EventSource cannot send the Authorization header):
  // calls onEvent(name, data) for each event until the stream ends or signal aborts.
  async function stream(path, onEvent, signal) {
    const r = await call(path, { signal }, { Accept: "text/event-stream" });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Refused(r.status, body.error || String(r.status), body.detail);
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  // -- the page ---------------------------------------------------------------------------
  function refuse(error) {
    const known = ["not_bound", "role_forbidden", "not_found"];
    const code = error.code || "error";
    document.getElementById("content").hidden = true;
    document.getElementById("refusal").hidden = false;
    document.getElementById("refusal-text").textContent =
      t(known.includes(code) ? `refusal.${code}` : "refusal.other");
    document.getElementById("refusal-code").textContent = code;
    document.title = `${t("refusal.title")} · plantwire`;
    status("");
  }

  function fail(error) {
    if (error instanceof Refused && error.status === 401) return;
    if (error instanceof Refused && [403, 404].includes(error.status)) {
      refuse(error);
      return;
    }
    status(t("status.failed", { detail: error.message || String(error) }), true);
  }

  function status(text, bad) {
    const el = document.getElementById("status");
    el.textContent = text;
    el.classList.toggle("bad", Boolean(bad));
  }

  function param(name) {
    return new URLSearchParams(location.search).get(name);
  }

  // -- the reader's locale ----------------------------------------------------------------
  // Dates and numbers of an English page follow the reader's own English (the first en-*
  // of the browser's languages: en-US puts the month first, en-GB and en-IN the day), else
  // en-GB (day before month, 24-hour clock: a Chinese reader who switches to English does not
  // get the US order); a Chinese page formats them as zh-CN.
  const locale = language !== "en" ? language
    : (navigator.languages || []).find((tag) => /^en-/i.test(tag)) || "en-GB";

  function number(value, digits) {
    if (value === null || value === undefined) return "—";
    return new Intl.NumberFormat(locale, { maximumFractionDigits: digits ?? 0 }).format(value);
  }

  function percent(value, digits) {
    if (value === null || value === undefined) return "—";
    return new Intl.NumberFormat(locale, {
      style: "percent", maximumFractionDigits: digits ?? 1,
    }).format(value);
  }

  function time(iso, zone, withDate) {
    if (!iso) return "—";
    const options = { timeZone: zone || undefined, hour: "2-digit", minute: "2-digit",
      second: "2-digit", hour12: false };
    if (withDate !== false) Object.assign(options, { year: "numeric", month: "2-digit",
      day: "2-digit" });
    return new Intl.DateTimeFormat(locale, options).format(new Date(iso));
  }

  // days of the window a trend by day, week or month shows by default
  const TREND_DAYS = { day: 7, week: 8 * 7, month: 182 };

  // a bucket's name: its first local day (a month's: the year and month)
  function period(iso, zone, bucket) {
    const month = bucket === "month";
    return new Intl.DateTimeFormat(locale, { timeZone: zone || undefined,
      year: month ? "numeric" : undefined, month: "2-digit", day: month ? undefined : "2-digit" })
      .format(new Date(iso));
  }

  // The window a page asks for: ?from= and ?to= when the address names both, else the last
  // ``days`` up to now, else none (the API's default)
  function windowParams(days) {
    if (param("from") && param("to")) return { from: param("from"), to: param("to") };
    if (!days) return {};
    const end = new Date();
    return { from: new Date(end.getTime() - days * 86400e3).toISOString(),
      to: end.toISOString() };
  }

  function element(tag, attributes, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attributes || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children) el.append(child);
    return el;
  }

  // The enterprise a page is about: ?enterprise=, else the only one the reader may see, else
  // a choice of them (then null).
  async function enterprise() {
    const asked = param("enterprise");
    if (asked) return asked;
    const visible = await api("/api/v1/enterprises");
    if (visible.length === 1) return String(visible[0].id);
    const list = element("ul", { class: "choices" }, ...visible.map((e) => element("li", {},
      element("a", { href: `${location.pathname}?enterprise=${e.id}` }, `${e.name} (${e.code})`))));
    document.getElementById("content").replaceChildren(
      element("p", { text: t(visible.length ? "choose.enterprise" : "home.none") }), list);
    return null;
  }

  function start(run) {
    const s = session();
    const who = document.getElementById("who");
    if (s && who) who.textContent = t("nav.signed_in_as", { user: s.username });
    for (const link of document.querySelectorAll("a[data-language]")) {
      link.addEventListener("click", () => {  // come back to where the page is now
        const here = location.pathname + location.search;
        link.href = `/console/language/${link.dataset.language}?next=${encodeURIComponent(here)}`;
      });
    }
    const out = document.getElementById("sign-out");
    if (out) out.addEventListener("click", signOut);
    const ready = boot.signedIn && !s ? token() : Promise.resolve(true);
    ready.then((signedIn) => {
      if (!signedIn) {
        goSignIn();
        return;
      }
      const now = session();
      if (who && now && !s) who.textContent = t("nav.signed_in_as", { user: now.username });
      Promise.resolve().then(run).catch(fail);
    });
  }

  return { boot, language, locale, t, session, signIn, api, send, me, stream, refuse, fail,
    status, param, number, percent, time, period, windowParams, TREND_DAYS, element, enterprise,
    start, Refused };
})();
