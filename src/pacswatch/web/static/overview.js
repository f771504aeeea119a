// Draws the overview's charts with uPlot from the JSON block the server wrote (#chart-data).
// The same numbers are in the page's tables: without this script the page still reads.
(function () {
  "use strict";
  function day(text) { return Date.parse(text + "T00:00:00Z") / 1000; }
  function draw(id, title, xs, series, opts) {
    var el = document.getElementById(id);
    if (!el || xs.length === 0) { return; }
    var width = Math.max(300, el.clientWidth || 500);
    var data = [xs].concat(series.map(function (s) { return s.values; }));
    var spec = {
      title: title, width: width, height: 220,
      scales: { x: xs.length > 1 ? { time: true }
        // One point (one scan so far) gives uPlot an empty range, which it widens by years:
        // a day either side keeps the axis on the date that is there.
        : { time: true, auto: false, min: xs[0] - 86400, max: xs[0] + 86400 } },
      series: [{}].concat(series.map(function (s) {
        return { label: s.label, stroke: s.color, width: 2, fill: s.fill || null, scale: s.scale || "y",
                 points: { show: xs.length < 40 } };
      })),
      axes: (opts && opts.axes) || [{}, {}]
    };
    el.setAttribute("data-drawn", "1");
    new uPlot(spec, data, el);
  }
  function start() {
    var block = document.getElementById("chart-data");
    if (!block || typeof uPlot === "undefined") { return; }
    var d = JSON.parse(block.textContent);
    draw("chart-weekly", "open findings", d.weekly.weeks.map(day),
         [{ label: "open", values: d.weekly.open, color: "#a1001f", fill: "rgba(161,0,31,0.08)" }]);
    draw("chart-scans", "exposed per full scan", d.scans.at,
         [{ label: "services", values: d.scans.services, color: "#0b5cad" },
          { label: "studies", values: d.scans.studies, color: "#c2410c", scale: "n" },
          { label: "patients", values: d.scans.patients, color: "#a16207", scale: "n" }],
         { axes: [{}, { label: "services" }, { side: 1, scale: "n", label: "studies / patients", grid: { show: false } }] });
    draw("chart-fixes", "fixed per week", d.fixes.weeks.map(day),
         [{ label: "fixed", values: d.fixes.fixed, color: "#15803d", fill: "rgba(21,128,61,0.12)" }]);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
