// hookyard dashboard: live updates over server-sent events. Pages work
// without this script; it only adds what changes while a page is open.
(function () {
  "use strict";
  var body = document.body;
  if (!window.EventSource || body.dataset.live === "off") return;
  var source = new EventSource("/ui/stream");
  var fresh = 0;
  // Let go of the stream when the page goes (a browser holds six
  // connections per server; a page kept for "back" would keep its stream).
  window.addEventListener("pagehide", function () { source.close(); });

  // Counters anywhere on the page: <span data-total="accepted">.
  source.addEventListener("totals", function (e) {
    var totals = JSON.parse(e.data);
    document.querySelectorAll("[data-total]").forEach(function (el) {
      var v = totals[el.dataset.total];
      if (v !== undefined) el.textContent = v.toLocaleString();
    });
  });

  // New events: prepended to a list showing the newest, unpaged and
  // unfiltered (or filtered to this source); otherwise counted in a
  // banner, so a list being read does not jump.
  source.addEventListener("event", function (e) {
    var ev = JSON.parse(e.data);
    var list = document.getElementById("events");
    if (!list) return;
    if (list.dataset.source && list.dataset.source !== ev.source) return;
    if (list.dataset.head === "yes" && window.scrollY < 40) {
      var tr = document.createElement("tr");
      tr.className = "live-row";
      tr.innerHTML = ev.row;
      list.insertBefore(tr, list.firstChild);
    } else {
      fresh += 1;
      var banner = document.getElementById("fresh");
      if (banner) {
        banner.hidden = false;
        banner.querySelector("[data-fresh]").textContent = fresh;
      }
    }
  });

  // Delivery results change a target's numbers or an event's deliveries:
  // pages that show them say so, and are reloaded by the reader.
  source.addEventListener("delivery", function (e) {
    var d = JSON.parse(e.data);
    document.querySelectorAll("[data-target-state='" + d.target + "']").forEach(function (el) {
      el.textContent = d.result;
    });
  });

  // The server could not keep up with us: reload what we show.
  source.addEventListener("resync", function () {
    var banner = document.getElementById("fresh");
    if (banner) banner.hidden = false;
  });
})();
