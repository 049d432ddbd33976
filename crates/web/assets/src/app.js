// OpenGP's own script: keyboard shortcuts, typeahead choice, and focus
// management. No inline scripts anywhere (the Content-Security-Policy
// forbids them), so every behaviour lives here.
(function () {
  "use strict";

  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }

  function go(selector) {
    var el = document.querySelector(selector);
    if (!el) return false;
    if (el.tagName === "A") { window.location.assign(el.href); } else { el.focus(); if (el.select) el.select(); }
    return true;
  }

  // Shortcuts: "/" find a patient, "n" new consultation, "s" summary,
  // "j" journal, Alt+S save the form being edited; "?" lists them.
  document.addEventListener("keydown", function (e) {
    if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === "s" || e.key === "S")) {
      var form = document.querySelector("form[data-save]");
      if (form) { e.preventDefault(); form.requestSubmit(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || typing(document.activeElement)) return;
    var handled = false;
    if (e.key === "/") handled = go("#patient-search");
    else if (e.key === "n") handled = go("a[data-key=consultation]");
    else if (e.key === "s") handled = go("a[data-key=summary]");
    else if (e.key === "j") handled = go("a[data-key=journal]");
    else if (e.key === "r") handled = go("a[data-key=register]");
    else if (e.key === "?") handled = go("#shortcuts");
    if (handled) e.preventDefault();
  });

  // Typeahead lists: ArrowDown from the field goes into the list; choosing
  // an entry fills the field's code and text.
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.key === "ArrowDown" && t.matches && t.matches("input[data-suggest]")) {
      var first = document.querySelector("#" + t.dataset.suggest + " button");
      if (first) { e.preventDefault(); first.focus(); }
    } else if (t.closest && t.closest(".og-suggest") && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      var li = t.closest("li");
      var next = e.key === "ArrowDown" ? li.nextElementSibling : li.previousElementSibling;
      if (next && next.querySelector("button")) { e.preventDefault(); next.querySelector("button").focus(); }
      else if (e.key === "ArrowUp") { e.preventDefault(); var f = document.querySelector("input[data-suggest='" + t.closest(".og-suggest").parentElement.id + "']"); if (f) f.focus(); }
    } else if (e.key === "Escape" && t.closest && t.closest(".og-suggest")) {
      var box = t.closest(".og-suggest").parentElement;
      var field = document.querySelector("input[data-suggest='" + box.id + "']");
      box.innerHTML = "";
      if (field) field.focus();
    }
  });

  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest(".og-suggest button[data-code]");
    if (!b) return;
    e.preventDefault();
    var box = b.closest(".og-suggest").parentElement;
    var field = document.querySelector("input[data-suggest='" + box.id + "']");
    if (!field) return;
    var code = document.getElementById(field.dataset.codeField);
    if (code) code.value = b.dataset.code;
    field.value = b.dataset.display;
    box.innerHTML = "";
    var status = document.getElementById(box.id + "-chosen");
    if (status) status.textContent = "Chosen: " + b.dataset.display + " (SNOMED CT " + b.dataset.code + ")";
    // Next field: the one after the typeahead in the form.
    var form = field.form;
    if (form) {
      var els = Array.prototype.filter.call(form.elements, function (x) { return x.type !== "hidden" && !x.disabled; });
      var i = els.indexOf(field);
      if (i >= 0 && els[i + 1]) els[i + 1].focus(); else field.focus();
    }
  });

  // A typed change to a coded field clears the code chosen before.
  document.addEventListener("input", function (e) {
    var t = e.target;
    if (t.matches && t.matches("input[data-suggest]")) {
      var code = document.getElementById(t.dataset.codeField);
      if (code) code.value = "";
    }
  });

  // An error summary takes the focus, as the NHS design system asks.
  function focusErrors() {
    var s = document.querySelector(".nhsuk-error-summary");
    if (s) { s.setAttribute("tabindex", "-1"); s.focus(); }
  }
  document.addEventListener("DOMContentLoaded", focusErrors);
  document.addEventListener("htmx:afterSwap", focusErrors);
})();
