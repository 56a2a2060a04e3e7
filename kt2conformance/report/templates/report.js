/* kt2conformance report: layout, filters, search, copy buttons. No external resources. */
(function () {
  "use strict";
  function layout() {
    var report = document.getElementById("kt-report");
    if (!report) return;
    var title = document.getElementById("title");
    if (title && report.parentNode) title.parentNode.insertBefore(report, title.nextSibling);
    // pytest-html's summary: say what it counts (tests, one a constraint), not a second verdict
    var summary = document.querySelector(".summary__data h2");
    if (summary) summary.textContent = "pytest tests (one per constraint; cases are counted above)";
    // the environment table goes to the bottom
    var head = document.getElementById("environment-header");
    var env = document.getElementById("environment");
    if (head && env) {
      var bottom = document.createElement("section");
      bottom.id = "kt-environment";
      bottom.appendChild(head);
      bottom.appendChild(env);
      var footer = document.querySelector("footer");
      document.body.insertBefore(bottom, footer);
    }
  }
  function filters() {
    var root = document.getElementById("kt-overview");
    if (!root) return;
    var buttons = Array.prototype.slice.call(root.querySelectorAll(".kt-filter"));
    var search = document.getElementById("kt-search");
    var groups = Array.prototype.slice.call(root.querySelectorAll(".kt-group"));
    var shown = document.getElementById("kt-shown");
    var none = document.getElementById("kt-none");
    function apply() {
      var active = {};
      buttons.forEach(function (b) { active[b.dataset.status] = b.getAttribute("aria-pressed") === "true"; });
      var words = (search.value || "").toLowerCase().split(/\s+/).filter(Boolean);
      var total = 0;
      groups.forEach(function (g) {
        var visible = 0;
        g.querySelectorAll(".kt-row").forEach(function (row) {
          var text = row.dataset.search;
          var ok = active[row.dataset.status] !== false && words.every(function (w) { return text.indexOf(w) >= 0; });
          row.hidden = !ok;
          if (ok) visible++;
        });
        g.hidden = visible === 0;
        if (words.length && visible) g.open = true;
        total += visible;
      });
      shown.textContent = total + " constraint row" + (total === 1 ? "" : "s") + " shown";
      none.hidden = total !== 0;
    }
    buttons.forEach(function (b) {
      b.addEventListener("click", function () {
        b.setAttribute("aria-pressed", b.getAttribute("aria-pressed") === "true" ? "false" : "true");
        apply();
      });
    });
    search.addEventListener("input", apply);
    apply();
  }
  function copying() {
    document.addEventListener("click", function (e) {
      var b = e.target.closest && e.target.closest(".kt-copy");
      if (!b) return;
      var box = b.closest(".kt-case, .kt-sample");
      var cmd = box.querySelector(".kt-curl-cmd");
      var text = cmd.querySelector(".kt-curl-line").textContent;
      if (cmd.querySelector(".kt-curl-end")) {  // the body is the request shown above
        var sent = box.querySelector(".kt-sent pre");
        text += "\n" + (sent ? sent.textContent : "") + "\nKT2_BODY";
      }
      function fallback() {
        var area = document.createElement("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        try { document.execCommand("copy"); } catch (err) { /* nothing else to try */ }
        area.remove();
      }
      var done = function () { b.textContent = "copied"; setTimeout(function () { b.textContent = "copy"; }, 1500); };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () { fallback(); done(); });
      } else { fallback(); done(); }
    });
  }
  function lazy() {
    // a case's content is an inert <template> until its <details> is first opened
    document.addEventListener("toggle", function (e) {
      var d = e.target;
      if (!d.classList || !d.classList.contains("kt-lazy") || !d.open) return;
      var t = d.querySelector(":scope > template");
      if (t) { d.appendChild(t.content.cloneNode(true)); t.remove(); }
    }, true);
  }
  function start() { layout(); filters(); copying(); lazy(); document.documentElement.dataset.ktReady = "1"; }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
