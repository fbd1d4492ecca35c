/* Alert Center console: live refresh (server-sent events, polling as the fallback), bulk selection
   and keyboard shortcuts.
   Plain JavaScript, no dependencies. Every action is also a plain form, so the page works
   without this file; this only makes it faster to drive. */
(function () {
  "use strict";
  var REFRESH_MS = 4000;     // polling, while the stream is unavailable
  var SAFETY_MS = 30000;     // polling while the stream is up: changes the stream does not carry (counts)
  var bulk = document.getElementById("bulk");
  var help = document.getElementById("help");
  var cursor = -1;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#alert-rows tr.row")); }
  function ticked() { return Array.prototype.slice.call(document.querySelectorAll("#alert-rows input[name=ids]:checked")); }

  /* --- bulk selection ------------------------------------------------------------------- */
  function syncBulk() {
    var n = ticked().length;
    // Enabled in the HTML (the page works without this file); disabled here while nothing is ticked.
    document.querySelectorAll("#bulk-ack, #bulk .bulk-action").forEach(function (button) {
      button.disabled = n === 0;
      var count = button.querySelector("[data-selected-count]");
      if (count) count.textContent = n ? "(" + n + ")" : "";
    });
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
    // Enter in a bulk field runs that group's action (the form's default button is a disabled
    // placeholder, so without this file Enter does nothing rather than the wrong action).
    bulk.addEventListener("keydown", function (e) {
      var group = e.key === "Enter" && e.target.closest(".bulkgroup");
      if (!group || e.target.tagName !== "INPUT") return;
      e.preventDefault();
      var button = group.querySelector(".bulk-action");
      if (button && !button.disabled) bulk.requestSubmit(button);
    });
    syncBulk();
  }

  /* --- live refresh: fetch the partial, swap elements by id, keep ticks and cursor -------- */
  var live = document.getElementById("live");
  var paused = false, timer = null, known = null, busy = false, again = false;

  function setLive(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.querySelector("[data-live-text]").textContent = text;
  }

  function currentIds() { return rows().map(function (r) { return r.dataset.id; }); }

  function refresh() {
    if (!bulk || paused || document.hidden) return schedule();
    if (busy) { again = true; return; }   // one fetch at a time; a burst of events costs one more
    var url = bulk.dataset.rowsUrl;
    if (bulk.dataset.page && bulk.dataset.page !== "1") { setLive("paused", "live on page 1 only"); return; }
    busy = true;
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
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); } else { schedule(); }
      });
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, streaming() ? SAFETY_MS : REFRESH_MS); }
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

  /* --- detail and dashboard: re-fetch the page, swap its [data-live-part] elements by id ------ */
  var parts = document.querySelectorAll("[data-live-part]").length > 0 && !bulk;
  var partsTimer = null, partsBusy = false, partsAgain = false;

  function typedInto(el) {   // never throw away what the operator is typing or has picked
    if (el.contains(document.activeElement) && document.activeElement !== document.body) return true;
    return Array.prototype.some.call(el.querySelectorAll("input, textarea, select"), function (f) {
      if (f.tagName === "SELECT") return Array.prototype.some.call(f.options, function (o) { return o.selected !== o.defaultSelected; });
      if (f.type === "checkbox" || f.type === "radio") return f.checked !== f.defaultChecked;
      return f.value !== f.defaultValue;
    });
  }

  function refreshParts() {
    if (!parts || document.hidden) return scheduleParts();
    if (partsBusy) { partsAgain = true; return; }
    partsBusy = true;
    fetch(window.location.href, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.redirected || !resp.ok) throw new Error("HTTP " + resp.status);
        return resp.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live-part]").forEach(function (old) {
          var fresh = old.id && doc.getElementById(old.id);
          if (fresh && !typedInto(old)) old.replaceWith(fresh);
        });
      })
      .catch(function () { /* the next event or poll tries again */ })
      .then(function () {
        partsBusy = false;
        if (partsAgain) { partsAgain = false; refreshParts(); } else { scheduleParts(); }
      });
  }

  function scheduleParts() {
    if (!parts) return;
    clearTimeout(partsTimer);
    partsTimer = setTimeout(refreshParts, streaming() ? SAFETY_MS : REFRESH_MS);
  }
  scheduleParts();

  /* --- the live stream: GET /api/v1/stream (server-sent events) from the stream process --------
     Each event re-fetches the affected partial, as a poll would, within a second. When the stream
     fails (server down, restarting, refused) the page polls again and retries the stream with
     backoff, resuming after the last event id it saw, so nothing in between is missed. */
  var streamEl = document.getElementById("stream");
  var STREAM_TYPES = ["alert.created", "alert.updated", "alert.escalated", "delivery.updated", "stream.reset"];
  // State, plus the ids seen (last 1000), for anyone debugging the page (and the browser tests).
  var stream = window.AlertCenterStream = { state: "off", ids: [], lastId: null };
  var source = null, retryMs = 2000, retryTimer = null;

  function streaming() { return Boolean(stream) && stream.state === "open"; }   // (called before it is set)

  function setMode(mode) { if (live) live.dataset.mode = mode; }

  function onStreamEvent(e) {
    var id = parseInt(e.lastEventId, 10);
    if (!isNaN(id)) {
      stream.lastId = id;
      stream.ids.push(id);
      if (stream.ids.length > 1000) stream.ids.shift();
    }
    var data = {};
    try { data = JSON.parse(e.data); } catch (err) { /* stream.reset carries no alert */ }
    var scope = streamEl.dataset.streamScope;
    if (scope === "list") {
      if (e.type !== "delivery.updated") refresh();
    } else if (scope === "alert") {
      if (e.type === "stream.reset" || String(data.alert_id) === streamEl.dataset.alertId) refreshParts();
    } else {
      refreshParts();
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    var after = stream.lastId !== null ? stream.lastId : streamEl.dataset.streamAfter;
    var url = streamEl.dataset.streamUrl;
    url += (url.indexOf("?") < 0 ? "?" : "&") + "last_event_id=" + encodeURIComponent(after);
    stream.state = "connecting";
    // withCredentials: the stream process may be on another origin (`make run`: port 8002); it
    // answers CORS for the console's origin only, and reads the session cookie to scope tenants.
    source = new EventSource(url, { withCredentials: true });
    source.onopen = function () {
      stream.state = "open";
      retryMs = 2000;
      setMode("stream");
      schedule();
      scheduleParts();
    };
    source.onerror = fallBack;
    STREAM_TYPES.forEach(function (type) { source.addEventListener(type, onStreamEvent); });
  }

  function fallBack() {
    if (source) { source.close(); source = null; }
    stream.state = "polling";
    setMode("polling");
    if (bulk && live) { refresh(); }   // catch up now, then every REFRESH_MS until the stream is back
    if (parts) { refreshParts(); }
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 30000);
  }

  if (streamEl && streamEl.dataset.streamUrl && window.EventSource) {
    setMode("connecting");
    connect();
  } else {
    setMode("polling");
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
  function openResolve() {                                 // r: the resolve note, ready to type
    var group = document.getElementById("bulk-resolve-group");
    if (!group) return false;
    if (!ticked().length && rows()[cursor]) {
      var box = rows()[cursor].querySelector("input[name=ids]");
      if (box) { box.checked = true; syncBulk(); }
    }
    group.open = true;
    document.getElementById("bulk-resolve-note").focus();
    return true;
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
      case "r": if (!openResolve()) return; break;
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
