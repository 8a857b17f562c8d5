/* The call console: lease the next call (POST /v1/tasks/next), show the customer, the offers
 * and the script, record the outcome (POST /v1/tasks/{id}/outcome), and keep the day's tally.
 * Keyboard: N next customer; S D B U W X the outcomes; Esc closes a half-filled outcome. */
(function () {
  "use strict";
  var NB = window.NB, m = NB.m, lang = NB.page.lang;
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var work = $("[data-nb-work]"), status = $("[data-nb-status]"), nextButton = $("[data-nb-next]");
  var offersBox = $("[data-nb-offers]"), offerSelect = $("[data-nb-offer-select]");
  var offerTemplate = $("#nb-offer-template");
  var task = null, done = true, busy = false;

  function field(name, value, root) {
    var node = $('[data-field="' + name + '"]', root || work);
    if (node) node.textContent = value == null ? "" : value;
    return node;
  }
  function say(text) { status.textContent = text; }
  function percent(p) { return Math.round(p * 100) + "%"; }

  function next() {
    if (busy) return;
    busy = true;
    NB.say("");
    nextButton.disabled = true;
    say(m("console.loading"));
    NB.api("POST", "/v1/tasks/next?lang=" + lang).then(function (answer) {
      busy = false;
      nextButton.disabled = false;
      if (!answer.task) {
        task = null; done = true;
        work.hidden = true;
        say(m("console.empty") + (answer.notice ? " (" + answer.notice + ")" : ""));
        nextButton.focus();
        return;
      }
      show(answer.task);
    }, function (e) {
      busy = false;
      nextButton.disabled = false;
      say(m("console.next_hint"));
      NB.fail(e);
    });
  }

  function show(t) {
    task = t; done = false;
    var d = t.decision;
    field("msisdn", d.msisdn);
    field("campaign", t.campaign.name);
    field("strategy", " · " + t.campaign.strategy_description);
    field("segment", d.segment ? d.segment.name : "–");
    field("selling_point", d.segment && d.segment.selling_point ? d.segment.selling_point : "–");
    field("brand", d.brand || "–");
    field("lifecycle", "…");
    field("services", "…");
    var lease = new Date(t.lease_until).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit" });
    field("attempt", m("console.attempt", { n: t.attempt }) + (t.callback ? " · " + m("outcome.callback") : "") + " · " + m("console.lease", { time: lease }));
    offersBox.textContent = "";
    offerSelect.textContent = "";
    var ordered = d.offers.slice().sort(function (a, b) {
      return (t.campaign_offers.indexOf(b.offer_id) >= 0) - (t.campaign_offers.indexOf(a.offer_id) >= 0) || a.rank - b.rank;
    });
    ordered.forEach(function (o) {
      offersBox.appendChild(offerCard(o));
      var opt = document.createElement("option");
      opt.value = o.offer_id;
      opt.textContent = o.name;
      offerSelect.appendChild(opt);
    });
    $("[data-nb-offer-choice]").hidden = ordered.length < 2;
    closeMore();
    setOutcomeButtons(true);
    work.hidden = false;
    work.classList.remove("nb-done");
    say(m("console.next_hint"));
    NB.api("GET", "/console/tasks/" + t.task_id + "/customer?lang=" + lang).then(function (c) {
      if (task !== t) return;
      field("brand", c.brand || "–");
      var stages = field("lifecycle", c.lifecycle.length ? "" : m("console.none"));
      if (c.lifecycle.length) {
        var list = document.createElement("ul");
        list.className = "nb-stages";
        c.lifecycle.forEach(function (l) {
          var li = document.createElement("li"), b = document.createElement("b");
          b.textContent = l.stage_name;
          li.appendChild(document.createTextNode(l.name + ": "));
          li.appendChild(b);
          list.appendChild(li);
        });
        stages.appendChild(list);
      }
      field("services", c.services.length ? c.services.map(function (s) { return s.name; }).join(", ") : m("console.none"));
      if (c.strategy) field("strategy", " · " + c.strategy);
    }, function () {
      if (task !== t) return;
      field("lifecycle", "–");
      field("services", "–");
    });
    var first = $(".nb-outcome button[data-outcome]");
    if (first) first.focus();
  }

  function offerCard(o) {
    var card = offerTemplate.content.firstElementChild.cloneNode(true);
    card.setAttribute("data-offer", o.offer_id);
    field("name", o.name, card);
    field("price", m("console.price", { price: o.price.toFixed(2).replace(/\.00$/, "") }), card);
    $('[data-field="fit"]', card).value = o.probability;
    field("fit-text", percent(o.probability), card);
    var reasons = $('[data-field="reasons"]', card);
    o.reasons.forEach(function (r) {
      var li = document.createElement("li");
      li.textContent = r;
      reasons.appendChild(li);
    });
    var s = o.script || {};
    field("opening", s.opening || "–", card);
    field("pitch", s.pitch || "–", card);
    field("closing", s.closing || "–", card);
    var objections = $('[data-field="objections"]', card);
    (s.objections || []).forEach(function (ob) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = "“" + ob.objection + "”";
      dd.textContent = ob.answer;
      objections.appendChild(dt);
      objections.appendChild(dd);
    });
    if (!(s.objections || []).length) objections.textContent = "–";
    return card;
  }

  function setOutcomeButtons(on) {
    Array.prototype.forEach.call(document.querySelectorAll(".nb-outcome button, .nb-outcome select, .nb-outcome input"), function (b) { b.disabled = !on; });
  }
  function closeMore() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-nb-more]"), function (f) { f.hidden = true; });
  }
  function openMore(kind) {
    closeMore();
    var form = $('[data-nb-more="' + kind + '"]');
    if (!form) return record(kind);
    if (kind === "callback") {
      var input = form.querySelector("input");
      var at = new Date(Date.now() + 24 * 3600 * 1000);
      at.setHours(10, 0, 0, 0);
      if (!input.value) input.value = localValue(at);
    }
    form.hidden = false;
    var focus = form.querySelector("select,input,button");
    if (focus) focus.focus();
  }
  function localValue(d) {
    var p = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes());
  }

  function record(outcome, extra) {
    if (!task || done || busy) return;
    var body = { outcome: outcome };
    if (outcome !== "wrong_number" && outcome !== "do_not_call") body.offer_id = offerSelect.value || task.decision.offers[0].offer_id;
    for (var k in extra || {}) body[k] = extra[k];
    busy = true;
    setOutcomeButtons(false);
    NB.say("");
    var t = task;
    NB.api("POST", "/v1/tasks/" + t.task_id + "/outcome", body).then(function (answer) {
      busy = false;
      done = true;
      closeMore();
      work.classList.add("nb-done");
      var text = m("console.recorded", { outcome: m("outcome." + outcome) });
      var sub = answer.outcome && answer.outcome.subscription;
      say(text + (sub ? " · " + m("status." + sub.status) : ""));
      if (sub && sub.status === "pending") follow(sub.id, text);
      refreshTally();
      nextButton.focus();
    }, function (e) {
      busy = false;
      setOutcomeButtons(true);
      NB.fail(e);
      if (e.kind === "conflict" || e.kind === "missing") { done = true; work.classList.add("nb-done"); nextButton.focus(); }
    });
  }
  function follow(id, text, n) {
    n = n || 0;
    setTimeout(function () {
      NB.api("GET", "/v1/subscriptions/" + id).then(function (s) {
        if (!done) return;
        say(text + " · " + m("status." + s.status) + (s.status_reason ? ": " + s.status_reason : ""));
        if (s.status === "pending" && n < 60) follow(id, text, n + 1);
      }, function () {});
    }, 1000);
  }

  function refreshTally() {
    NB.api("GET", "/console/tally").then(function (tally) {
      Object.keys(tally).forEach(function (k) {
        var node = document.querySelector('[data-tally="' + k + '"]');
        if (!node) return;
        node.textContent = k === "rate" ? (tally.rate == null ? "–" : percent(tally.rate)) : tally[k];
      });
    }, function () {});
  }

  nextButton.addEventListener("click", next);
  Array.prototype.forEach.call(document.querySelectorAll("button[data-outcome]"), function (b) {
    b.addEventListener("click", function () { openMore(b.getAttribute("data-outcome")); });
  });
  $('[data-nb-more="declined"]').addEventListener("submit", function (ev) {
    ev.preventDefault();
    record("declined", { reason: ev.target.reason.value });
  });
  $('[data-nb-more="callback"]').addEventListener("submit", function (ev) {
    ev.preventDefault();
    var value = ev.target.callback_at.value;
    var at = value ? new Date(value) : null;
    if (!at || isNaN(at.getTime()) || at.getTime() <= Date.now()) { NB.say(m("console.callback_missing")); return; }
    record("callback", { callback_at: at.toISOString() });
  });
  var dnd = $('[data-nb-more="do_not_call"]');
  if (dnd) dnd.addEventListener("submit", function (ev) { ev.preventDefault(); record("do_not_call"); });

  var KEYS = { s: "accepted", d: "declined", b: "callback", u: "no_answer", w: "wrong_number", x: "do_not_call" };
  document.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var tag = ev.target && ev.target.tagName;
    if (ev.key === "Escape") { closeMore(); return; }
    // Enter on the reason list records, as in a text field (a select does not submit itself).
    if (ev.key === "Enter" && tag === "SELECT" && ev.target.form && ev.target.form.hasAttribute("data-nb-more")) {
      ev.preventDefault();
      ev.target.form.requestSubmit();
      return;
    }
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    var key = (ev.key || "").toLowerCase();
    if (key === "n" && (done || !task)) { ev.preventDefault(); next(); return; }
    if (KEYS[key] && task && !done) { ev.preventDefault(); openMore(KEYS[key]); }
  });
  nextButton.focus();
})();
