// Herald's own script: small behaviours the pages declare with data- attributes, so the
// Content-Security-Policy can forbid inline script.
(function () {
  "use strict";

  // Ask before destructive actions: <form data-confirm="Really?">, or on the submit button
  // (data-confirm, and data-confirm-delete when the form's action select says "delete").
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var button = event.submitter;
    var question = form.getAttribute("data-confirm");
    if (button) {
      var action = form.querySelector("select[name=action]");
      if (action && action.value === "delete" && button.getAttribute("data-confirm-delete")) {
        question = button.getAttribute("data-confirm-delete");
      } else if (button.getAttribute("data-confirm")) {
        question = button.getAttribute("data-confirm");
      }
    }
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // <input type=checkbox data-check-all="ids">: (un)check every "ids" box of its form.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.hasAttribute("data-check-all")) return;
    var name = box.getAttribute("data-check-all");
    var scope = box.form || document;
    scope.querySelectorAll("input[type=checkbox][name='" + name + "']").forEach(function (b) { b.checked = box.checked; });
  });

  // <button data-add-row="#rows">: append an empty copy of the last row.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-add-row]") : null;
    if (!button) return;
    var rows = document.querySelector(button.getAttribute("data-add-row"));
    var last = rows && rows.lastElementChild;
    if (!last) return;
    var copy = last.cloneNode(true);
    copy.querySelectorAll("input").forEach(function (i) { i.value = ""; });
    copy.querySelectorAll("select").forEach(function (s) { s.selectedIndex = 0; });
    copy.querySelectorAll(".field-error").forEach(function (e) { e.remove(); });
    rows.appendChild(copy);
    var first = copy.querySelector("input");
    if (first) first.focus();
  });

  // <input type=file data-preview="/url" data-preview-target="#el">: send the first 64 KiB of
  // the chosen file to the server, which answers with the column mapping form.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.hasAttribute("data-preview")) return;
    var file = input.files && input.files[0];
    var target = document.querySelector(input.getAttribute("data-preview-target"));
    if (!file || !target) return;
    var body = new FormData();
    body.append("file_name", file.name);
    body.append("sample", file.slice(0, 65536), file.name);
    var token = document.body.getAttribute("hx-headers");
    var headers = { "HX-Request": "true" };
    try { headers["X-CSRF-Token"] = JSON.parse(token)["X-CSRF-Token"]; } catch (e) { /* no token: the server refuses */ }
    target.innerHTML = "<p class=\"muted\">Reading " + file.name.replace(/[<>&"]/g, "") + "…</p>";
    fetch(input.getAttribute("data-preview"), { method: "POST", body: body, headers: headers, credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        target.innerHTML = html;
        var size = target.querySelector("[data-file-size]");
        if (size) size.value = String(file.size);
        if (window.htmx) window.htmx.process(target);
      })
      .catch(function () { target.innerHTML = "<div class=\"flash flash-error\">The file could not be read. Try again.</div>"; });
  });

  // Import progress: show the box, poll the server's counts, and follow the upload.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail && event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-import-progress")) return;
    var box = document.querySelector(form.getAttribute("data-import-progress"));
    var id = form.querySelector("input[name=import_id]");
    if (!box) return;
    box.hidden = false;
    form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    if (id && window.htmx) {
      var status = document.createElement("div");
      status.setAttribute("hx-get", "/contacts/imports/" + encodeURIComponent(id.value) + "/progress");
      status.setAttribute("hx-trigger", "every 1s");
      status.setAttribute("hx-swap", "outerHTML");
      box.appendChild(status);
      window.htmx.process(status);
    }
  });
  document.addEventListener("htmx:xhr:progress", function (event) {
    var bar = document.getElementById("upload-progress");
    var d = event.detail;
    if (bar && d && d.lengthComputable && d.total > 0) bar.value = Math.round(d.loaded * 100 / d.total);
  });

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

  // Window badges count down: <span data-window-until="RFC 3339">open, 23 h 12 min left</span>.
  // At expiry the badge turns to "closed, templates only" and a `window-expired` event
  // bubbles up, so a form that depends on the window (the send page) asks the server again.
  function tickWindows() {
    var now = Date.now();
    document.querySelectorAll("[data-window-until]").forEach(function (badge) {
      var until = Date.parse(badge.getAttribute("data-window-until"));
      if (isNaN(until)) return;
      var minutes = Math.floor((until - now) / 60000);
      if (until <= now) {
        badge.removeAttribute("data-window-until");
        badge.textContent = "closed, templates only";
        badge.classList.remove("badge-ok");
        badge.classList.add("badge-warn");
        badge.dispatchEvent(new CustomEvent("window-expired", { bubbles: true }));
      } else if (minutes < 1) {
        badge.textContent = "open, less than a minute left";
      } else if (minutes < 60) {
        badge.textContent = "open, " + minutes + " min left";
      } else {
        badge.textContent = "open, " + Math.floor(minutes / 60) + " h " + (minutes % 60) + " min left";
      }
    });
  }
  setInterval(tickWindows, 1000);

  // --- Narrow screens: the navigation behind a menu button (issue 15) ---
  // The sidebar arrives open (so it works without script) with its button hidden; on narrow
  // screens this shows the button and closes the menu, on load and each time the sidebar is
  // swapped in again (boosted navigation re-renders it), so choosing a page closes it.
  var narrow = window.matchMedia("(max-width: 820px)");
  function setMenu(button, open) {
    var sidebar = button.closest(".sidebar");
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (sidebar) sidebar.classList.toggle("menu-closed", !open);
  }
  function initMenus() {
    document.querySelectorAll("[data-menu-toggle]").forEach(function (button) {
      if (button.dataset.menuReady) return;
      button.dataset.menuReady = "1";
      button.hidden = false;
      setMenu(button, !narrow.matches);
    });
  }
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-menu-toggle]") : null;
    if (!button) return;
    setMenu(button, button.getAttribute("aria-expanded") !== "true");
  });
  // Widening the window opens the menu again, so nothing stays hidden on a desktop layout.
  narrow.addEventListener("change", function () {
    document.querySelectorAll("[data-menu-toggle]").forEach(function (b) { setMenu(b, !narrow.matches); });
  });
  document.addEventListener("DOMContentLoaded", initMenus);
  document.addEventListener("htmx:load", initMenus);
  document.addEventListener("htmx:afterSettle", initMenus);
  // --- end of the menu button ---

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
