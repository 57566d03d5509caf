// clerkgate console. The token lives in this tab's sessionStorage and goes to the admin API as
// a bearer header, never in a URL. The state arrives as HTML the gateway rendered (and escaped);
// everything this script writes itself is set as text.
"use strict";

(function () {
  const KEY = "clerkgate.admin-token";
  const REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);

  // The read-only page (scripts were off when the form was posted) has nothing to drive.
  if (document.body.dataset.view !== "live") {
    return;
  }

  let timer = null;
  let deadline = null; // ms (Date.now) when the mode in force expires, from the last state
  let pending = null; // the change waiting for its confirmation

  function token() {
    return sessionStorage.getItem(KEY) || "";
  }

  function headers(json) {
    const h = { Authorization: "Bearer " + token() };
    if (json) {
      h["Content-Type"] = "application/json";
    }
    return h;
  }

  function showLogin(message) {
    sessionStorage.removeItem(KEY);
    clearInterval(timer);
    timer = null;
    $("app").hidden = true;
    $("signout").hidden = true;
    $("login").hidden = false;
    $("state").textContent = "";
    document.body.className = "";
    const err = $("login-error");
    err.textContent = message || "";
    err.hidden = !message;
    $("token").focus();
  }

  async function refresh() {
    const kind = $("kind").value;
    const url = "/console/state" + (kind ? "?kind=" + encodeURIComponent(kind) : "");
    let resp;
    try {
      resp = await fetch(url, { headers: headers(false), cache: "no-store", credentials: "omit" });
    } catch (e) {
      $("updated").textContent = "The gateway did not answer: " + e.message;
      return false;
    }
    if (resp.status === 401 || resp.status === 403) {
      const body = await resp.json().catch(() => ({}));
      showLogin(body.message || "The gateway refused the token.");
      return false;
    }
    if (!resp.ok) {
      $("updated").textContent = "The gateway answered " + resp.status + "; showing the last state.";
      return false;
    }
    // Rendered and escaped by the gateway: no value in it can become markup, and the page's
    // Content-Security-Policy runs no script but this file.
    $("state").innerHTML = await resp.text();
    const root = $("state-root");
    const mode = root ? root.dataset.mode : "";
    document.body.className = mode ? "mode-" + mode : "";
    const cd = $("countdown");
    deadline = cd ? Date.now() + Number(cd.dataset.secondsLeft) * 1000 : null;
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString();
    return true;
  }

  function countdown(seconds) {
    const s = Math.max(0, seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (h > 0) return h + "h " + pad(m) + "m " + pad(sec) + "s";
    if (m > 0) return m + "m " + pad(sec) + "s";
    return sec + "s";
  }

  function tick() {
    const cd = $("countdown");
    if (cd && deadline !== null) {
      cd.textContent = countdown(Math.ceil((deadline - Date.now()) / 1000));
    }
  }

  async function start() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    if (await refresh()) {
      clearInterval(timer);
      timer = setInterval(refresh, REFRESH_MS);
    }
  }

  function ask(text, change) {
    pending = change;
    $("confirm-text").textContent = text;
    $("confirm").hidden = false;
    $("confirm-yes").focus();
  }

  function cancel() {
    pending = null;
    $("confirm").hidden = true;
  }

  function result(text, ok) {
    const r = $("result");
    r.textContent = text;
    r.className = ok ? "result ok" : "result error";
  }

  // What the gateway answered, as the operator should read it.
  async function answer(resp) {
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      return { ok: false, text: "Refused (" + resp.status + "): " + (body.message || body.error || "no reason given") };
    }
    return { ok: true, body: body };
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY, value);
    $("token").value = "";
    await start();
  });

  $("signout").addEventListener("click", () => showLogin(""));
  $("kind").addEventListener("change", refresh);

  $("mode-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const mode = document.querySelector("input[name=mode]:checked").value;
    const reason = $("mode-reason").value.trim();
    const ttl = $("mode-ttl").value.trim();
    if (mode !== "enforce" && !reason) {
      result("A reason is required for " + mode + ".", false);
      $("mode-reason").focus();
      return;
    }
    let text;
    if (mode === "enforce") {
      text = "Clear the admin override: the gateway goes back to the config file's mode and verifies every token again.";
    } else if (mode === "bypass") {
      text = "Put this gateway in BYPASS for " + (ttl || "the default time") +
        ": EVERY request is forwarded WITHOUT authentication (tagged X-Auth-Bypass). Reason: " + reason;
    } else {
      text = "Put this gateway in GRACE for " + (ttl || "the default time") +
        ": correctly signed tokens up to the grace limit past their expiry are accepted. Reason: " + reason;
    }
    const body = { mode: mode, reason: reason, ttl: mode === "enforce" || !ttl ? null : ttl };
    ask(text, { method: "PUT", url: "/mode", body: body, kind: "mode" });
  });

  $("revoke-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const what = $("revoke-what").value;
    const id = $("revoke-id").value.trim();
    const reason = $("revoke-reason").value.trim();
    if (!id) {
      result("Give the id to revoke.", false);
      $("revoke-id").focus();
      return;
    }
    const text = what === "user_id"
      ? "Revoke EVERY session of user " + id + " at this gateway: their requests are refused from now on."
      : "Revoke session " + id + " at this gateway: its requests are refused from now on.";
    const body = { reason: reason };
    body[what] = id;
    ask(text + (reason ? " Reason: " + reason : ""), { method: "POST", url: "/revocations", body: body, kind: "revoke" });
  });

  $("run-triage").addEventListener("click", async () => {
    const button = $("run-triage");
    button.disabled = true;
    result("Triage is probing Clerk, this gateway and the upstream (6 s at most)…", true);
    try {
      const resp = await fetch("/console/triage", {
        method: "POST",
        headers: headers(false),
        cache: "no-store",
        credentials: "omit",
      });
      const a = await answer(resp);
      if (!a.ok) {
        result(a.text, false);
      } else {
        const r = a.body;
        result("Triage: " + r.category + " (" + r.severity + "). " + r.why + " Next: " + r.next, r.severity === "none");
      }
    } catch (e) {
      result("The gateway did not answer: " + e.message, false);
    } finally {
      button.disabled = false;
    }
    await refresh();
  });

  $("confirm-no").addEventListener("click", cancel);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("confirm").hidden) cancel();
  });

  $("confirm-yes").addEventListener("click", async () => {
    const change = pending;
    cancel();
    if (!change) return;
    result("Sending…", true);
    let resp;
    try {
      resp = await fetch(change.url, {
        method: change.method,
        headers: headers(true),
        body: JSON.stringify(change.body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      result("The gateway did not answer: " + e.message + ". Nothing is known to have changed.", false);
      return;
    }
    const a = await answer(resp);
    if (!a.ok) {
      result(a.text, false);
    } else if (change.kind === "mode") {
      const m = a.body;
      let text = "The gateway answered: mode " + m.mode + " (source " + m.source + ")";
      if (m.expires_at) text += ", until " + m.expires_at;
      result(text + ".", true);
    } else {
      const n = Object.keys(a.body.sessions || {}).length + Object.keys(a.body.users || {}).length;
      result("The gateway answered: " + n + " session and user revocations in force.", true);
    }
    await refresh();
  });

  setInterval(tick, 1000);
  if (token()) {
    start();
  } else {
    showLogin("");
  }
})();
