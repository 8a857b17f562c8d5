/* nextbest counter pop-up: one <script> tag on a CRM page.
 *
 *   <script src="{nextbest}/widgets/counter/counter.js" data-watch="#msisdn" defer></script>
 *
 * data-watch   CSS selector of the CRM's customer-number input (optional)
 * data-channel store (default) or inbound
 * data-key     an API key (optional; otherwise the clerk signs in once, in the panel)
 * data-base    nextbest's URL (default: where this file came from)
 * data-lang    en or zh (default: the browser's language)
 * data-hotkey  keyboard shortcut that opens the panel (default alt+shift+n; "" for none)
 *
 * Or from the page: NextBest.init({...the same, camelCase...}); NextBest.lookup("138...");
 * NextBest.clear(); or dispatch `nextbest:customer` with {detail: {msisdn}} on document.
 *
 * Nothing opens by itself: when there are offers a small badge lights up with the count, and
 * the panel opens only when the clerk clicks it (or presses the hotkey). Everything lives in a
 * shadow root, so the page's CSS and ours never meet. No framework, no build step.
 */
(function () {
  "use strict";
  if (window.NextBest && window.NextBest.version) return;

  var script = document.currentScript;
  var data = (script && script.dataset) || {};
  var origin = script && script.src ? new URL(script.src, location.href).origin : location.origin;

  var WORDS = {
    en: {
      title: "Offers for this customer", open: "nextbest: {n} offer(s) to suggest",
      none: "nextbest: nothing to offer", idle: "nextbest", close: "Close",
      unknown: "This number is not known to the warehouse: general offers only.",
      nothing: "Nothing to offer this customer now.", price: "¥{p}/month",
      subscribe: "Subscribe", decline: "Declined", consider: "Considering", why: "Why",
      reason: "Reason", record: "Record", cancel: "Cancel",
      pending: "Subscribing… waiting for the operator's systems",
      active: "Active: the service is open", failed: "Failed: {r}",
      cancelled: "Cancelled", still: "Still pending; it will be active shortly.",
      declined: "Declined: {r}", considering: "Noted: the customer is considering it",
      signin: "Sign in to see offers", key: "Your key", go: "Sign in",
      lookup: "Looking up…", lang: "中文",
      "r.price": "Too expensive", "r.not_interested": "Not interested",
      "r.has_similar": "Already has something similar", "r.no_time": "No time now",
      "r.handset": "Handset does not support it", "r.other": "Other",
      unreachable: "nextbest cannot be reached. Check the network; nothing was recorded.",
      expired: "Your sign-in has expired. Sign in again; nothing was recorded.",
      badkey: "This key is unknown, revoked or expired.",
      forbidden: "Your role may not do this.",
      badnumber: "That is not a valid mobile number.",
      held: "The customer already has this service.",
      busy: "Too many look-ups: wait {s} s and try again.",
      nodata: "No warehouse data is loaded yet; ask your administrator.",
      server: "nextbest had a problem and recorded nothing. Try again.",
      error: "Something went wrong: {d}"
    },
    zh: {
      title: "可向该客户推荐", open: "nextbest：有 {n} 项可推荐业务",
      none: "nextbest：暂无可推荐业务", idle: "nextbest", close: "关闭",
      unknown: "经营分析系统中没有此号码：只推荐通用业务。",
      nothing: "目前没有适合该客户的业务。", price: "每月 {p} 元",
      subscribe: "订购", decline: "拒绝", consider: "考虑中", why: "推荐理由",
      reason: "原因", record: "记录", cancel: "取消",
      pending: "正在开通… 等待业务支撑系统处理",
      active: "已开通", failed: "开通失败：{r}", cancelled: "已取消",
      still: "仍在处理中，稍后即可开通。",
      declined: "已拒绝：{r}", considering: "已记录：客户考虑中",
      signin: "登录后查看推荐", key: "您的密钥", go: "登录",
      lookup: "正在查询…", lang: "English",
      "r.price": "价格太高", "r.not_interested": "不感兴趣", "r.has_similar": "已有类似业务",
      "r.no_time": "现在没时间", "r.handset": "手机不支持", "r.other": "其他",
      unreachable: "无法连接 nextbest。请检查网络；本次操作未记录。",
      expired: "登录已过期，请重新登录；本次操作未记录。",
      badkey: "密钥无效、已吊销或已过期。",
      forbidden: "您的角色无权进行此操作。",
      badnumber: "号码无效。",
      held: "客户已订购该业务。",
      busy: "查询过多：请等待 {s} 秒后重试。",
      nodata: "尚未加载经营分析数据，请联系管理员。",
      server: "nextbest 出现问题，本次操作未记录。请重试。",
      error: "出现问题：{d}"
    }
  };
  var REASONS = ["price", "not_interested", "has_similar", "no_time", "handset", "other"];

  var CSS = [
    ":host{all:initial;position:fixed;right:16px;bottom:16px;z-index:2147483000;",
    "font:14px/1.4 system-ui,-apple-system,'Segoe UI','PingFang SC','Microsoft YaHei',sans-serif;color:#1c2430}",
    "*{box-sizing:border-box}",
    "button,select,input{font:inherit}",
    ".badge{width:48px;height:48px;border-radius:50%;border:0;background:#9aa5b1;color:#fff;padding:0;line-height:48px;",
    "font-weight:700;cursor:pointer;box-shadow:0 2px 8px rgba(0,0,0,.25);display:block;margin-left:auto}",
    ".badge.lit{background:#e8590c;animation:blink 1s ease-in-out 3}",
    ".badge.lock{background:#5c6b7a}.badge.err{background:#c92a2a}",
    ".badge:focus-visible,button:focus-visible,select:focus-visible,input:focus-visible{outline:3px solid #1971c2;outline-offset:2px}",
    "@keyframes blink{50%{box-shadow:0 0 0 10px rgba(232,89,12,.25);transform:scale(1.08)}}",
    "@media (prefers-reduced-motion:reduce){.badge.lit{animation:none}}",
    ".panel{position:absolute;right:0;bottom:58px;width:min(380px,calc(100vw - 32px));",
    "max-height:min(560px,calc(100vh - 90px));overflow:auto;background:#fff;border:1px solid #ccd3da;",
    "border-radius:10px;box-shadow:0 8px 28px rgba(0,0,0,.22);padding:12px 14px}.panel:focus{outline:none}",
    ".head{display:flex;align-items:baseline;gap:8px}.head h2{font-size:15px;margin:0;flex:1}",
    ".who{color:#5c6b7a;font-size:12px;margin:2px 0 8px}",
    ".x,.lang{border:0;background:none;color:#1971c2;cursor:pointer;padding:2px 4px}",
    ".offer{border-top:1px solid #e4e8ec;padding:10px 0}",
    ".offer h3{font-size:15px;margin:0 0 2px;display:flex;justify-content:space-between;gap:8px}",
    ".price{color:#2b8a3e;white-space:nowrap}.pitch{margin:4px 0}",
    ".why{margin:4px 0 6px;padding-left:18px;color:#3d4a57;font-size:13px}",
    ".acts{display:flex;gap:6px;flex-wrap:wrap}",
    ".acts button,.form button{border:1px solid #adb5bd;background:#f8f9fa;border-radius:6px;padding:5px 10px;cursor:pointer}",
    ".acts .yes,.form .yes{background:#2b8a3e;border-color:#2b8a3e;color:#fff}",
    ".form{display:flex;gap:6px;flex-wrap:wrap;align-items:center;margin-top:6px}",
    ".form select,.form input{padding:4px 6px;border:1px solid #adb5bd;border-radius:6px;min-width:0;flex:1}",
    ".state{margin-top:6px;padding:6px 8px;border-radius:6px;background:#f1f3f5}",
    ".state.active{background:#d3f9d8;color:#1e6b2f}.state.failed{background:#ffe3e3;color:#a61e1e}",
    ".state.pending{background:#fff3bf}",
    ".msg{padding:8px;border-radius:6px;background:#fff4e6;margin:6px 0}.msg.err{background:#ffe3e3;color:#a61e1e}",
    "[hidden]{display:none!important}"
  ].join("");

  var cfg = {
    base: (data.base || origin).replace(/\/+$/, ""),
    key: data.key || null,
    channel: data.channel || "store",
    watch: data.watch || null,
    lang: pickLang(data.lang),
    hotkey: data.hotkey === undefined ? "alt+shift+n" : data.hotkey,
    limit: data.limit ? parseInt(data.limit, 10) : null
  };
  var csrf = null;
  var state = { msisdn: null, decision: null, status: "idle", message: null, offers: {} };
  var open = false;
  var seq = 0;
  var presented = {};
  var host, root, badge, panel, watched;

  function pickLang(asked) {
    var l = (asked || navigator.language || "en").toLowerCase();
    return l.indexOf("zh") === 0 ? "zh" : "en";
  }
  function w(id, vals) {
    var s = (WORDS[cfg.lang] || WORDS.en)[id] || WORDS.en[id] || id;
    return s.replace(/\{(\w)\}/g, function (_, k) { return vals && vals[k] != null ? vals[k] : ""; });
  }
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== null && attrs[k] !== false) e.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function uid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  function readCookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name.replace(/[$()*+.?[\\\]^{|}]/g, "\\$&") + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }

  /* --- the API: every failure becomes words --- */
  function Failure(kind, words) { this.kind = kind; this.words = words; }
  function api(method, path, body, extra) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (cfg.key) headers.Authorization = "Bearer " + cfg.key;
    else if (method !== "GET") {
      var token = csrf || readCookie("__Host-nextbest_csrf");
      if (token) headers["X-CSRF-Token"] = token;
    }
    for (var h in extra || {}) headers[h] = extra[h];
    var ctl = window.AbortController ? new AbortController() : null;
    var timer = ctl && setTimeout(function () { ctl.abort(); }, 10000);
    return fetch(cfg.base + path, {
      method: method, headers: headers, credentials: cfg.key ? "omit" : "include",
      body: body === undefined ? undefined : JSON.stringify(body), signal: ctl && ctl.signal
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
      throw new Failure("unreachable", w("unreachable"));
    });
  }
  function failure(r, json) {
    var detail = (json && json.detail) || r.statusText || String(r.status);
    if (r.status === 401) return cfg.key ? new Failure("key", w("badkey")) : new Failure("signin", w("expired"));
    if (r.status === 403) return /CSRF/i.test(detail) ? new Failure("signin", w("expired")) : new Failure("forbidden", w("forbidden"));
    if (r.status === 400 && json && json.field === "msisdn") return new Failure("input", w("badnumber"));
    if (r.status === 409) return new Failure("held", w("held"));
    if (r.status === 429) return new Failure("busy", w("busy", { s: r.headers.get("Retry-After") || "60" }));
    if (r.status === 503) return new Failure("nodata", w("nodata"));
    if (r.status >= 500) return new Failure("server", w("server"));
    return new Failure("other", w("error", { d: detail }));
  }
  function asFailure(e) { return e instanceof Failure ? e : new Failure("other", w("error", { d: String(e) })); }

  /* --- looking up a customer --- */
  function normalize(raw) {
    var digits = String(raw || "").replace(/[\s-]/g, "").replace(/^(\+?86|0086)(?=1\d{10}$)/, "");
    return /^1[3-9]\d{9}$/.test(digits) ? digits : null;
  }
  function lookup(raw) {
    var msisdn = normalize(raw);
    if (!msisdn) {
      if (String(raw || "").replace(/\D/g, "").length >= 11) set({ msisdn: null, decision: null, status: "error", message: w("badnumber") });
      return Promise.resolve(null);
    }
    if (msisdn === state.msisdn && state.status !== "error" && state.status !== "signin") return Promise.resolve(state.decision);
    return ask(msisdn);
  }
  function ask(msisdn) {
    var mine = ++seq;
    set({ msisdn: msisdn, decision: null, status: "loading", message: null, offers: {} });
    var body = { msisdn: msisdn, channel: cfg.channel, lang: cfg.lang };
    if (cfg.limit) body.limit = cfg.limit;
    return api("POST", "/v1/decisions", body).then(function (decision) {
      if (mine !== seq) return null;
      set({ decision: decision, status: decision.offers.length ? "offers" : "none" });
      return decision;
    }, function (e) {
      if (mine !== seq) return null;
      e = asFailure(e);
      set({ status: e.kind === "signin" ? "signin" : "error", message: e.kind === "signin" && !state.everSignedIn ? null : e.words });
      return null;
    });
  }
  function clear() {
    seq++;
    set({ msisdn: null, decision: null, status: "idle", message: null, offers: {} });
  }
  function set(patch) {
    for (var k in patch) state[k] = patch[k];
    render();
  }

  /* --- outcomes --- */
  function offerState(id) { return state.offers[id] || (state.offers[id] = { phase: "idle" }); }
  function record(offer, outcome, reason) {
    var d = state.decision, s = offerState(offer.offer_id);
    if (!d || s.phase === "sending") return;
    if (!s.key || s.outcome !== outcome) { s.key = uid(); s.outcome = outcome; }
    s.phase = "sending"; s.message = null;
    render();
    var body = { offer_id: offer.offer_id, outcome: outcome };
    if (reason) body.reason = reason;
    api("POST", "/v1/decisions/" + d.decision_id + "/outcomes", body, { "Idempotency-Key": s.key }).then(function (res) {
      if (outcome === "accepted") {
        var sub = res.subscription || {};
        s.phase = sub.status || "pending"; s.sub = sub.id; s.reason = sub.status_reason;
        if (s.phase === "pending") poll(s, d, 0);
      } else {
        s.phase = outcome; s.reason = reason;
      }
      render();
    }, function (e) {
      e = asFailure(e);
      s.phase = e.kind === "held" ? "held" : "idle"; s.message = e.words;
      if (e.kind === "signin") state.status = "signin";
      render();
    });
  }
  function poll(s, d, n) {
    var wait = n < 20 ? 1000 : 3000;
    setTimeout(function () {
      if (!s.sub || s.phase !== "pending") return;
      api("GET", "/v1/subscriptions/" + s.sub).then(function (sub) {
        s.phase = sub.status; s.reason = sub.status_reason;
        if (s.phase === "pending") {
          s.message = n > 30 ? w("still") : null;
          if (n < 120) poll(s, d, n + 1);
        } else s.message = null;
        if (state.decision === d) render();
      }, function (e) {
        s.message = asFailure(e).words;
        if (state.decision === d) render();
        if (n < 120) poll(s, d, n + 1);
      });
    }, wait);
  }
  function markPresented() {
    // Opening the panel is the clerk putting these offers to the customer: recorded once per
    // decision and offer, quietly (a failure here must not get in the clerk's way).
    var d = state.decision;
    if (!d || presented[d.decision_id]) return;
    presented[d.decision_id] = true;
    d.offers.forEach(function (o) {
      api("POST", "/v1/decisions/" + d.decision_id + "/outcomes", { offer_id: o.offer_id, outcome: "presented" },
        { "Idempotency-Key": "presented-" + d.decision_id + "-" + o.offer_id }).catch(function () {});
    });
  }

  /* --- signing in (no key given): a session cookie, and the CSRF token kept in memory --- */
  function signIn(key, errorBox) {
    return api("POST", "/v1/session", { key: key }).then(function (s) {
      csrf = s.csrf_token;
      state.everSignedIn = true;
      var again = state.msisdn;
      state.msisdn = null;
      if (again) ask(again); else set({ status: "idle", message: null });
    }, function (e) {
      e = asFailure(e);
      errorBox.textContent = e.kind === "signin" ? w("badkey") : e.words;
      errorBox.hidden = false;
    });
  }

  /* --- drawing --- */
  function toggle(show) {
    open = show === undefined ? !open : show;
    render();
    if (open) {
      markPresented();
      var first = panel.querySelector("input") || panel.querySelector("button.yes") || panel;
      first.focus();
    } else badge.focus();
  }
  function render() {
    if (!root) return;
    var n = state.decision ? state.decision.offers.length : 0;
    badge.className = "badge" + (state.status === "offers" ? " lit" : state.status === "signin" ? " lock" : state.status === "error" ? " err" : "");
    badge.textContent = state.status === "offers" ? String(n) : state.status === "loading" ? "…" : state.status === "error" ? "!" : state.status === "signin" ? "" : "nb";
    if (state.status === "signin") badge.appendChild(lockIcon());
    var label = state.status === "offers" ? w("open", { n: n }) : state.status === "none" ? w("none") : state.status === "signin" ? w("signin") : state.message || w("idle");
    badge.setAttribute("aria-label", label);
    badge.title = label;
    badge.setAttribute("aria-expanded", open ? "true" : "false");
    panel.hidden = !open;
    if (!open) return;
    var had = root.activeElement, card = had && had.closest && had.closest("[data-offer]");
    var keep = card ? card.getAttribute("data-offer") : had && panel.contains(had) ? "" : null;
    panel.textContent = "";
    draw();
    if (keep !== null && !root.activeElement) {
      var back = keep && panel.querySelector('[data-offer="' + keep + '"] button');
      (back || panel).focus();
    }
  }
  function draw() {
    var d = state.decision;
    panel.appendChild(el("div", { class: "head" }, [
      el("h2", { id: "nb-title", text: w("title") }),
      el("button", { class: "lang", type: "button", lang: cfg.lang === "zh" ? "en" : "zh", text: w("lang"), onclick: switchLang }),
      el("button", { class: "x", type: "button", "aria-label": w("close"), text: "✕", onclick: function () { toggle(false); } })
    ]));
    if (d) {
      var seg = d.segment ? d.segment.name + (d.segment.selling_point ? " · " + d.segment.selling_point : "") : "";
      panel.appendChild(el("p", { class: "who", text: d.msisdn + (seg ? " · " + seg : "") }));
      if (!d.known) panel.appendChild(el("p", { class: "msg", text: w("unknown") }));
    }
    if (state.status === "signin") return renderSignIn();
    if (state.status === "loading") panel.appendChild(el("p", { class: "msg", role: "status", text: w("lookup") }));
    if (state.message) panel.appendChild(el("p", { class: "msg err", role: "alert", text: state.message }));
    if (!d) return;
    if (!d.offers.length) panel.appendChild(el("p", { class: "msg", text: d.notice || w("nothing") }));
    d.offers.forEach(function (o) { panel.appendChild(renderOffer(o)); });
  }
  function lockIcon() {
    var ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("width", "20"); svg.setAttribute("height", "20");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M7 10V7a5 5 0 0 1 10 0v3h1a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1H6a1 1 0 0 1-1-1v-9a1 1 0 0 1 1-1zm2 0h6V7a3 3 0 0 0-6 0z");
    svg.appendChild(path);
    return svg;
  }
  function renderSignIn() {
    var err = el("p", { class: "msg err", role: "alert", hidden: true });
    var input = el("input", { type: "password", "aria-label": w("key"), placeholder: w("key"), autocomplete: "off", required: true });
    if (state.message) panel.appendChild(el("p", { class: "msg err", role: "alert", text: state.message }));
    panel.appendChild(el("form", {
      class: "form", onsubmit: function (ev) { ev.preventDefault(); if (input.value.trim()) signIn(input.value.trim(), err); }
    }, [el("label", { text: w("signin") }), input, el("button", { class: "yes", type: "submit", text: w("go") }), err]));
  }
  function renderOffer(o) {
    var s = offerState(o.offer_id);
    var card = el("section", { class: "offer", "data-offer": o.offer_id, "aria-label": o.name }, [
      el("h3", {}, [el("span", { text: o.name }), el("span", { class: "price", text: w("price", { p: o.price.toFixed(2).replace(/\.00$/, "") }) })]),
      el("p", { class: "pitch", text: o.script && o.script.pitch })
    ]);
    if (o.reasons && o.reasons.length) {
      card.appendChild(el("ul", { class: "why", "aria-label": w("why") }, o.reasons.map(function (r) { return el("li", { text: r }); })));
    }
    var done = { pending: 1, active: 1, failed: 1, cancelled: 1, declined: 1, held: 1 }[s.phase];
    if (!done) {
      var busy = s.phase === "sending";
      card.appendChild(el("div", { class: "acts" }, [
        el("button", { class: "yes", type: "button", disabled: busy, text: w("subscribe"), onclick: function () { record(o, "accepted"); } }),
        el("button", { type: "button", disabled: busy, "aria-expanded": s.phase === "declining" ? "true" : "false", text: w("decline"),
          onclick: function () { s.phase = s.phase === "declining" ? "idle" : "declining"; render(); focusIn(o.offer_id, "select"); } }),
        el("button", { type: "button", disabled: busy, text: w("consider"), onclick: function () { record(o, "considering"); } })
      ]));
    }
    if (s.phase === "declining") {
      var pick = el("select", { "aria-label": w("reason") }, REASONS.map(function (r) { return el("option", { value: r, text: w("r." + r) }); }));
      card.appendChild(el("form", { class: "form", onsubmit: function (ev) { ev.preventDefault(); record(o, "declined", pick.value); } }, [
        pick, el("button", { class: "yes", type: "submit", text: w("record") }),
        el("button", { type: "button", text: w("cancel"), onclick: function () { s.phase = "idle"; render(); } })
      ]));
    }
    var line = null;
    if (s.phase === "pending") line = ["pending", w("pending")];
    else if (s.phase === "active") line = ["active", w("active")];
    else if (s.phase === "failed") line = ["failed", w("failed", { r: s.reason || "" })];
    else if (s.phase === "cancelled") line = ["failed", w("cancelled")];
    else if (s.phase === "declined") line = ["", w("declined", { r: w("r." + s.reason) })];
    else if (s.phase === "considering") line = ["", w("considering")];
    if (line) card.appendChild(el("p", { class: "state " + line[0], role: "status", "data-state": s.phase, text: line[1] }));
    if (s.message) card.appendChild(el("p", { class: "msg err", role: "alert", text: s.message }));
    return card;
  }
  function focusIn(offerId, selector) {
    var target = panel.querySelector('[data-offer="' + offerId + '"] ' + selector);
    if (target) target.focus();
  }
  function switchLang() {
    cfg.lang = cfg.lang === "zh" ? "en" : "zh";
    if (state.msisdn && !Object.keys(state.offers).length) { var m = state.msisdn; state.msisdn = null; lookup(m); }
    else render();
    var b = panel.querySelector(".lang");
    if (b) b.focus();
  }

  function mount() {
    if (host) return;
    host = document.createElement("nextbest-counter");
    root = host.attachShadow({ mode: "open" });
    if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } else root.appendChild(el("style", { text: CSS }));
    panel = el("div", { class: "panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "nb-title", tabindex: "-1", hidden: true });
    badge = el("button", { class: "badge", type: "button", "aria-haspopup": "dialog", onclick: function () { toggle(); } });
    root.appendChild(panel);
    root.appendChild(badge);
    document.body.appendChild(host);
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && open) { toggle(false); return; }
      if (!cfg.hotkey || !matches(ev, cfg.hotkey)) return;
      ev.preventDefault();
      toggle();
    });
    document.addEventListener("nextbest:customer", function (ev) {
      if (ev.detail && ev.detail.msisdn) lookup(ev.detail.msisdn); else clear();
    });
    watch(cfg.watch);
    render();
  }
  function matches(ev, combo) {
    var parts = combo.toLowerCase().split("+");
    var key = parts.pop();
    return (ev.key || "").toLowerCase() === key && ev.altKey === parts.indexOf("alt") >= 0 &&
      ev.shiftKey === parts.indexOf("shift") >= 0 && ev.ctrlKey === parts.indexOf("ctrl") >= 0;
  }
  function watch(selector) {
    if (!selector) return;
    var onChange = function (ev) {
      var t = ev.target;
      if (!t || !t.matches || !t.matches(selector)) return;
      if (ev.type === "change" || normalize(t.value)) lookup(t.value);
      else if (!t.value) clear();
    };
    if (watched) { document.removeEventListener("change", watched, true); document.removeEventListener("input", watched, true); }
    watched = onChange;
    // Delegated, so an input the CRM draws later is watched too.
    document.addEventListener("change", onChange, true);
    document.addEventListener("input", onChange, true);
  }

  window.NextBest = {
    version: "1",
    init: function (opts) {
      opts = opts || {};
      if (opts.base) cfg.base = String(opts.base).replace(/\/+$/, "");
      if (opts.key !== undefined) cfg.key = opts.key || null;
      if (opts.channel) cfg.channel = opts.channel;
      if (opts.lang) cfg.lang = pickLang(opts.lang);
      if (opts.hotkey !== undefined) cfg.hotkey = opts.hotkey;
      if (opts.limit) cfg.limit = opts.limit;
      if (opts.watch !== undefined) { cfg.watch = opts.watch; if (host) watch(cfg.watch); }
      if (document.body) mount();
      return window.NextBest;
    },
    lookup: function (msisdn) { if (!host) mount(); return lookup(msisdn); },
    clear: clear,
    open: function () { if (!host) mount(); toggle(true); },
    close: function () { if (open) toggle(false); },
    state: function () { return JSON.parse(JSON.stringify({ status: state.status, msisdn: state.msisdn, offers: state.decision ? state.decision.offers.length : 0 })); }
  };

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
