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

  // --- Issue 15 part B: focus after htmx swaps, the send form's Send button, form errors ---

  // Keyboard focus stays where the person is after every htmx swap: on the element with the
  // same id if the swap replaced it (caret kept), else on the swapped region's
  // [data-focus-after-swap] element, its first field, or its heading; never the page's top.
  // Noted when the request starts too: a submit button disabled during the request
  // (hx-disabled-elt) has lost the focus by the time the answer is swapped in.
  // A request that starts while nothing has the focus keeps what was noted before it.
  var focusBefore = null;
  function noteFocus() {
    var el = document.activeElement;
    if (el && el !== document.body) {
      focusBefore = { id: el.id, el: el, start: null, end: null };
      try { focusBefore.start = el.selectionStart; focusBefore.end = el.selectionEnd; } catch (e) { /* not a text field */ }
    }
  }
  document.addEventListener("htmx:beforeRequest", noteFocus);
  document.addEventListener("htmx:beforeSwap", noteFocus);
  function focusable(el) {
    return el && !el.disabled && !el.hidden && el.getClientRects().length > 0;
  }
  document.addEventListener("htmx:afterSettle", function (event) {
    var before = focusBefore;
    var active = document.activeElement;
    if (!before) return;
    focusBefore = null;
    if (active && active !== document.body && document.contains(active)) return;
    if (document.contains(before.el) && focusable(before.el)) { before.el.focus(); return; }
    var same = before.id ? document.getElementById(before.id) : null;
    if (same && focusable(same)) {
      same.focus();
      if (before.start !== null && typeof same.setSelectionRange === "function") {
        try { same.setSelectionRange(before.start, before.end); } catch (e) { /* type without a caret */ }
      }
      return;
    }
    var region = event.detail && event.detail.target;
    if (!(region instanceof Element) || !document.contains(region)) region = document.getElementById("main");
    if (!region) return;
    var next = region.querySelector("[data-focus-after-swap]");
    if (!focusable(next)) {
      next = Array.prototype.find.call(
        region.querySelectorAll("input:not([type=hidden]), select, textarea, button, a[href]"), focusable);
    }
    if (!next) {
      next = region.querySelector("h1, h2");
      if (next && !next.hasAttribute("tabindex")) next.setAttribute("tabindex", "-1");
    }
    if (next) next.focus();
  });

  // The send form: Send stays disabled, with the reason beside it, until the text or every
  // template variable has a value. A reason from the server ([data-blocked]) stays.
  function sendState() {
    var button = document.getElementById("send-button");
    var form = button && button.form;
    if (!form || button.hasAttribute("data-blocked")) return;
    var reason = "";
    var text = form.querySelector("#send-text");
    if (text && text.value.trim() === "") reason = "Write the message first.";
    form.querySelectorAll("input[data-variable-value]").forEach(function (input) {
      if (!reason && input.value.trim() === "") reason = "Give " + input.getAttribute("data-variable-value") + " a value first.";
    });
    button.disabled = reason !== "";
    var note = document.getElementById("send-note");
    if (note) note.textContent = reason;
  }
  document.addEventListener("input", function (event) {
    if (event.target instanceof Element && event.target.closest("#send-form")) sendState();
  });

  // Forms with errors: the first field in error takes the focus (errors are tied to their
  // fields with aria-describedby and aria-invalid in the markup).
  var errorIds = 0;
  function focusFirstError(root) {
    var scope = root || document;
    // An error printed after its field without markup tying them (the template form, …):
    // tied here, to the nearest field before it.
    scope.querySelectorAll(".field-error").forEach(function (error) {
      var control = null;
      for (var el = error.previousElementSibling; el && !control; el = el.previousElementSibling) {
        if (el.matches("input:not([type=hidden]), select, textarea")) control = el;
        else if (!el.matches(".field-error, .help")) control = el.querySelector("input:not([type=hidden]), select, textarea");
      }
      if (!control) return;
      if (!error.id) error.id = "field-error-" + (++errorIds);
      var described = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      if (described.indexOf(error.id) < 0) described.push(error.id);
      control.setAttribute("aria-describedby", described.join(" "));
      control.setAttribute("aria-invalid", "true");
    });
    var field = scope.querySelector("[aria-invalid=true]");
    if (field && focusable(field) && !(document.activeElement && document.activeElement.getAttribute("aria-invalid") === "true")) field.focus();
  }
  document.addEventListener("DOMContentLoaded", function () { focusFirstError(); });
  document.addEventListener("htmx:afterSettle", function (e) {
    var t = e.detail && e.detail.target;
    if (t instanceof Element && !t.closest("#send-form")) focusFirstError(t);
  });


  // One bar and one state word: once the import reports its own progress, the upload's bar
  // and words give way to it.
  document.addEventListener("htmx:afterSettle", function () {
    var box = document.getElementById("import-progress");
    if (!box || !box.querySelector("#import-status")) return;
    box.querySelectorAll("#upload-progress, .upload-words").forEach(function (el) { el.hidden = true; });
  });
  // An upload cut off (the connection dropped, the server went away): say so, and that the
  // rows already imported stay.
  function uploadCut(event) {
    var form = event.detail && event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-import-progress")) return;
    var xhr = event.detail.xhr;
    if (event.type === "htmx:responseError" && xhr && xhr.status > 0 && xhr.status < 500) return;
    var box = document.querySelector(form.getAttribute("data-import-progress"));
    if (!box) return;
    box.querySelectorAll("[hx-trigger^='every']").forEach(function (el) { el.remove(); });
    var id = form.querySelector("input[name=import_id]");
    var note = document.createElement("div");
    note.className = "flash flash-error";
    note.id = "upload-cut";
    note.setAttribute("role", "alert");
    note.textContent = "The upload was cut off before the end of the file (the connection dropped or the server stopped). The rows imported before that stay imported; import the file again to finish (rows already there are updated, not added twice).";
    if (id) {
      var link = document.createElement("a");
      link.href = "/contacts/imports/" + encodeURIComponent(id.value);
      link.textContent = " See what was imported.";
      note.appendChild(link);
    }
    box.appendChild(note);
    form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = false; });
  }
  document.addEventListener("htmx:sendError", uploadCut);
  document.addEventListener("htmx:responseError", uploadCut);
  // --- end of issue 15 part B ---

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

  // --- issue 17: a broadcast's audience is lists and filters, or a CSV: show the chosen one ---
  function showAudience() {
    var chosen = document.querySelector("[data-audience-source]:checked");
    if (!chosen) return;
    document.querySelectorAll("[data-audience-panel]").forEach(function (panel) {
      panel.hidden = panel.dataset.audiencePanel !== chosen.value;
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target instanceof Element && event.target.matches("[data-audience-source]")) showAudience();
  });
  document.addEventListener("DOMContentLoaded", showAudience);
  // --- end of the audience choice ---
  document.addEventListener("htmx:afterSettle", function (e) { settleFlashes(e.target); });
})();
