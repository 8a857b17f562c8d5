/* Shared by the console and the dashboard: the page's words, calling the API with the session
 * cookie and its CSRF token, turning every failure into a sentence, signing in and out. */
(function () {
  "use strict";
  var page = JSON.parse(document.getElementById("nb-page").textContent);
  var alertBox = document.getElementById("nb-alert");

  function m(id, vals) {
    var s = page.messages[id] || id;
    return s.replace(/\{(\w+)\}/g, function (_, k) { return vals && vals[k] != null ? vals[k] : ""; });
  }
  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function Failure(kind, words, status, detail) {
    this.kind = kind; this.words = words; this.status = status; this.detail = detail;
  }
  function failure(r, json) {
    var detail = (json && json.detail) || r.statusText || String(r.status);
    var s = r.status;
    if (s === 401) return new Failure("session", m("error.session"), s, detail);
    if (s === 403) {
      return /CSRF/i.test(detail) ? new Failure("session", m("error.session"), s, detail)
        : new Failure("forbidden", m("error.forbidden") + " (" + detail + ")", s, detail);
    }
    if (s === 400 && json && json.field === "msisdn") return new Failure("input", m("error.bad_number"), s, detail);
    if (s === 404) return new Failure("missing", m("error.not_found"), s, detail);
    if (s === 409) return new Failure("conflict", m("error.generic", { detail: detail }), s, detail);
    if (s === 429) return new Failure("busy", m("error.rate_limited", { seconds: r.headers.get("Retry-After") || "60" }), s, detail);
    if (s === 503) return new Failure("nodata", m("error.no_data"), s, detail);
    if (s >= 500) return new Failure("server", m("error.server"), s, detail);
    return new Failure("other", m("error.generic", { detail: detail }), s, detail);
  }

  function api(method, path, body, headers) {
    var h = { Accept: "application/json" };
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (method !== "GET") {
      var token = cookie("__Host-nextbest_csrf");
      if (token) h[page.csrf_header] = token;
    }
    for (var k in headers || {}) h[k] = headers[k];
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, 15000);
    return fetch(path, {
      method: method, headers: h, credentials: "same-origin", signal: ctl.signal,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      clearTimeout(timer);
      return r.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        if (r.ok) return json;
        throw failure(r, json);
      });
    }, function () {
      clearTimeout(timer);
      throw new Failure("unreachable", m("error.unreachable"), 0, "");
    });
  }

  function say(text) {
    if (!alertBox) return;
    alertBox.textContent = text || "";
    alertBox.hidden = !text;
  }
  function words(e) {
    return e instanceof Failure ? e.words : m("error.generic", { detail: String(e) });
  }
  function fail(e) {
    say(words(e));
    if (e instanceof Failure && e.kind === "session" && alertBox) {
      // The session is gone: the page itself is the sign-in form once reloaded.
      var again = document.createElement("button");
      again.type = "button";
      again.className = "nb-button nb-small";
      again.textContent = m("signin.submit");
      again.addEventListener("click", function () { location.reload(); });
      alertBox.appendChild(document.createTextNode(" "));
      alertBox.appendChild(again);
      again.focus();
    }
  }

  // Sign in: the key goes once to POST /v1/session; the page reloads with the cookie.
  var form = document.querySelector("[data-nb-signin]");
  if (form) {
    var err = form.querySelector(".nb-form-error");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var input = form.querySelector("input[name=key]");
      var button = form.querySelector("button");
      button.disabled = true;
      err.hidden = true;
      api("POST", "/v1/session", { key: input.value.trim() }).then(function () {
        input.value = "";
        location.reload();
      }, function (e) {
        button.disabled = false;
        err.textContent = e.kind === "session" ? m("error.key_invalid") : words(e);
        err.hidden = false;
        input.focus();
      });
    });
    var first = form.querySelector("input");
    if (first) first.focus();
  }
  var out = document.querySelector("[data-nb-signout]");
  if (out) {
    out.addEventListener("click", function () {
      api("DELETE", "/v1/session").then(function () { location.reload(); }, function (e) {
        if (e.kind === "session") location.reload(); else fail(e);
      });
    });
  }

  window.NB = { page: page, m: m, api: api, say: say, fail: fail, words: words, Failure: Failure };
  // The page's own script (console, dashboard) runs after this one: "load" comes after it, so
  // a marker set then says the keyboard and the buttons are live (tests and kiosks wait on it).
  window.addEventListener("load", function () {
    document.documentElement.setAttribute("data-nb-ready", "");
  });
})();
