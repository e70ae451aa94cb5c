// shepherd dashboard: local times, confirmations, and live updates over the event stream.
"use strict";
(function () {
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) {
        el.textContent = d.toLocaleString();
      }
    });
  }

  function confirmations(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    });
  }

  var state = document.getElementById("live-state");
  var pending = false;
  var busy = false;

  function refresh() {
    if (busy) { pending = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (resp) { return resp.ok ? resp.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var live = document.getElementById("live");
        var active = document.activeElement;
        var typing = active && live.contains(active) && /INPUT|TEXTAREA|SELECT/.test(active.tagName);
        if (fresh && live && !typing) {
          live.innerHTML = fresh.innerHTML;
          localTimes(live);
          confirmations(live);
        }
        document.body.dataset.refreshed = String(Date.now());
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (pending) { pending = false; setTimeout(refresh, 150); }
      });
  }

  var timer = null;
  function soon() {
    if (timer) return;
    timer = setTimeout(function () { timer = null; refresh(); }, 40);  // a burst: one fetch
  }

  function live() {
    if (!document.body.dataset.live) return;
    var url = document.body.dataset.events + "?kind=dispatch,run_started,outcome,slot";
    var polling = null;
    function poll() {
      if (polling) return;
      if (state) state.textContent = "live: polling";
      polling = setInterval(refresh, 3000);
    }
    if (!window.EventSource) { poll(); return; }
    var es = new EventSource(url, { withCredentials: true });
    var failures = 0;
    es.onopen = function () {
      failures = 0;
      if (polling) { clearInterval(polling); polling = null; }
      if (state) state.textContent = "live";
      document.body.dataset.stream = "open";
    };
    ["dispatch", "run_started", "outcome", "slot"].forEach(function (kind) {
      es.addEventListener(kind, soon);
    });
    es.onerror = function () {
      failures += 1;
      if (failures >= 2) { es.close(); poll(); }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    confirmations(document);
    live();
  });
})();
