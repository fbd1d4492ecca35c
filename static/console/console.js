/* Alert Center console: live refresh, bulk selection and keyboard shortcuts.
   Plain JavaScript, no dependencies. Every action is also a plain form, so the page works
   without this file; this only makes it faster to drive. */
(function () {
  "use strict";
  var REFRESH_MS = 4000;
  var bulk = document.getElementById("bulk");
  var help = document.getElementById("help");
  var cursor = -1;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#alert-rows tr.row")); }
  function ticked() { return Array.prototype.slice.call(document.querySelectorAll("#alert-rows input[name=ids]:checked")); }

  /* --- bulk selection ------------------------------------------------------------------- */
  function syncBulk() {
    var button = document.getElementById("bulk-ack");
    var n = ticked().length;
    if (button) {
      button.disabled = n === 0;
      var count = button.querySelector("[data-selected-count]");
      if (count) count.textContent = n ? "(" + n + ")" : "";
    }
    var all = document.getElementById("check-all");
    if (all) {
      var boxes = document.querySelectorAll("#alert-rows input[name=ids]");
      all.checked = boxes.length > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
    }
  }

  if (bulk) {
    bulk.addEventListener("change", function (e) {
      if (e.target.id === "check-all") {
        document.querySelectorAll("#alert-rows input[name=ids]").forEach(function (box) { box.checked = e.target.checked; });
      }
      syncBulk();
    });
    // A click anywhere on a row opens it, except on links, checkboxes and their cell.
    bulk.addEventListener("click", function (e) {
      var row = e.target.closest("tr.row");
      if (!row || e.target.closest("a, input, td.check, button")) return;
      if (window.getSelection && String(window.getSelection())) return; // selecting text, not navigating
      window.location.href = row.dataset.href;
    });
    syncBulk();
  }

  /* --- live refresh: fetch the partial, swap elements by id, keep ticks and cursor -------- */
  var live = document.getElementById("live");
  var paused = false, timer = null, known = null;

  function setLive(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.querySelector("[data-live-text]").textContent = text;
  }

  function currentIds() { return rows().map(function (r) { return r.dataset.id; }); }

  function refresh() {
    if (!bulk || paused || document.hidden) return schedule();
    var url = bulk.dataset.rowsUrl;
    if (bulk.dataset.page && bulk.dataset.page !== "1") { setLive("paused", "live on page 1 only"); return; }
    fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.redirected || !resp.ok) throw new Error("HTTP " + resp.status);
        return resp.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var keep = ticked().map(function (b) { return b.value; });
        var cursorId = cursor >= 0 && rows()[cursor] ? rows()[cursor].dataset.id : null;
        known = known || currentIds();
        ["state-tabs", "alert-rows", "pager"].forEach(function (id) {
          var fresh = doc.getElementById(id), old = document.getElementById(id);
          if (fresh && old) old.replaceWith(fresh);
        });
        rows().forEach(function (row, i) {
          var box = row.querySelector("input[name=ids]");
          if (box && keep.indexOf(box.value) >= 0) box.checked = true;
          if (known.indexOf(row.dataset.id) < 0) row.classList.add("fresh");
          if (row.dataset.id === cursorId) cursor = i;
        });
        known = currentIds();
        paint();
        syncBulk();
        setLive("on", "live · " + new Date().toLocaleTimeString());
      })
      .catch(function () { setLive("error", "refresh failed, retrying"); })
      .then(schedule);
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, REFRESH_MS); }
  function togglePause() {
    paused = !paused;
    setLive(paused ? "paused" : "on", paused ? "paused (p)" : "live");
    if (!paused) refresh();
  }
  if (bulk && live) {
    known = currentIds();
    live.addEventListener("click", togglePause);
    schedule();
  }

  /* --- keyboard --------------------------------------------------------------------------- */
  function paint() {
    var all = rows();
    all.forEach(function (r, i) { r.classList.toggle("cursor", i === cursor); });
    if (all[cursor]) all[cursor].scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    var n = rows().length;
    if (!n) return;
    cursor = Math.max(0, Math.min(n - 1, cursor + step));
    paint();
  }
  function acknowledge() {
    var ackForm = document.getElementById("ack-form");
    if (ackForm) { ackForm.submit(); return; }            // detail page
    var button = document.getElementById("bulk-ack");
    if (!bulk || !button) return;
    if (!ticked().length && rows()[cursor]) {              // nothing ticked: the highlighted alert
      var box = rows()[cursor].querySelector("input[name=ids]");
      if (box) box.checked = true;
    }
    if (ticked().length) bulk.submit();
  }

  var pendingG = false;
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var typing = e.target.closest("input, textarea, select, [contenteditable]");
    if (e.key === "Escape") {
      if (help && help.open) help.close();
      if (typing) e.target.blur();
      return;
    }
    if (typing) return;
    if (pendingG) {
      pendingG = false;
      var dest = { a: "/", d: "/dashboard", s: "/silences" }[e.key];
      if (dest) { e.preventDefault(); window.location.href = dest; }
      return;
    }
    switch (e.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "o": case "Enter":
        if (rows()[cursor]) window.location.href = rows()[cursor].dataset.href; else return;
        break;
      case "x":
        var row = rows()[cursor], box = row && row.querySelector("input[name=ids]");
        if (box) { box.checked = !box.checked; syncBulk(); }
        break;
      case "a": acknowledge(); break;
      case "/":
        var search = document.getElementById("search");
        if (!search) return;
        search.focus(); search.select();
        break;
      case "p": if (live) togglePause(); break;
      case "g": pendingG = true; setTimeout(function () { pendingG = false; }, 1200); break;
      case "?": if (help) { help.open ? help.close() : help.showModal(); } break;
      default: return;
    }
    e.preventDefault();
  });
  // Selects that apply at once (CSP forbids inline handlers, so no onchange="...").
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // Tenant/plugin filters: the page ships a short datalist; as one types, ask the server for
  // the matching slugs (a tenant may have a thousand plugins, the page must not list them all).
  document.querySelectorAll("input[data-options-url]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("list")), pending = null, asked = null;
    if (!list) return;
    input.addEventListener("input", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        var q = input.value.trim();
        if (q === asked) return;
        asked = q;
        fetch(input.dataset.optionsUrl + "?q=" + encodeURIComponent(q), { credentials: "same-origin", cache: "no-store" })
          .then(function (resp) { if (!resp.ok) throw new Error("HTTP " + resp.status); return resp.json(); })
          .then(function (data) {
            if (asked !== q) return; // a later keystroke asked again
            list.replaceChildren.apply(list, data.options.map(function (slug) {
              var option = document.createElement("option");
              option.value = slug;
              return option;
            }));
          })
          .catch(function () { asked = null; }); // keep the old options; the next keystroke retries
      }, 200);
    });
  });
  document.querySelectorAll("[data-help-open]").forEach(function (b) {
    b.addEventListener("click", function () { if (help) help.showModal(); });
  });
})();
