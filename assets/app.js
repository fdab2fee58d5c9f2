// Herald's own script: small behaviours the pages declare with data- attributes, so the
// Content-Security-Policy can forbid inline script.
(function () {
  "use strict";

  // <form data-confirm="Really?">: ask before a destructive action.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // <button data-copy="#selector">: copy the text of an element.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // Flash messages fade after a while, errors stay until dismissed by navigation.
  function settleFlashes(root) {
    (root || document).querySelectorAll(".flash-success, .flash-info").forEach(function (el) {
      if (el.dataset.timer) return;
      el.dataset.timer = "1";
      setTimeout(function () { el.classList.add("flash-gone"); }, 6000);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { settleFlashes(); });
  document.addEventListener("htmx:afterSettle", function (e) { settleFlashes(e.target); });
})();
