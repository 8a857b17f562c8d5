/* The dashboard is drawn by the server; this script only acts: approve or reject a campaign,
 * send a failed sale again (admins). Every failure is shown in words. */
(function () {
  "use strict";
  var NB = window.NB, m = NB.m;

  function act(button, path, body, done) {
    var row = button.closest("tr");
    var buttons = row.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    NB.say("");
    NB.api("POST", path, body).then(function () {
      var cell = button.closest("td");
      cell.textContent = done;
      cell.setAttribute("data-done", "true");
    }, function (e) {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      NB.fail(e);
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-nb-campaign]"), function (button) {
    button.addEventListener("click", function () {
      var action = button.getAttribute("data-action");
      var id = button.getAttribute("data-nb-campaign");
      var note = button.closest("tr").querySelector("input[name=note]");
      act(button, "/v1/campaigns/" + encodeURIComponent(id) + "/transitions",
        { action: action, note: note ? note.value : "" },
        m(action === "approve" ? "dash.approved" : "dash.rejected"));
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-nb-retry]"), function (button) {
    button.addEventListener("click", function () {
      act(button, "/v1/subscriptions/" + button.getAttribute("data-nb-retry") + "/retry", undefined, m("dash.retried"));
    });
  });
})();
