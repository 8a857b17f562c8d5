/* The mock CRM's own behaviour (not nextbest's): find a customer, save a ticket. */
(function () {
  "use strict";
  var search = document.getElementById("crm-search");
  var card = document.getElementById("crm-customer");
  search.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var number = search.msisdn.value.replace(/\s/g, "");
    card.hidden = !number;
    document.getElementById("crm-customer-title").textContent = number.replace(/^(\d{3})\d{4}(\d{4})$/, "$1****$2");
    // Tell nextbest the CRM now has a customer (the widget would also see the field change).
    if (window.NextBest) window.NextBest.lookup(number);
  });
  var ticket = document.getElementById("crm-ticket");
  ticket.addEventListener("submit", function (ev) {
    ev.preventDefault();
    document.getElementById("crm-saved").hidden = false;
  });
})();
