/* cloudlet dashboard: draws the charts of every [data-feed] block with uPlot and keeps them
 * current. A feed is a JSON URL answering {"charts": {NAME: {"times": [...], "series":
 * {LABEL: [...]}, "accumulate"?: true, "bars"?: true, "labels"?: [...]}}}; each
 * [data-chart=NAME] element inside the block draws that chart. After each draw the element
 * carries data-series (labels, "|"-separated), data-total (the sum of every value) and
 * data-points (non-empty values): what a person reads off the chart, for tests to read too.
 * No inline script anywhere: the pages' Content-Security-Policy forbids it. */
(function () {
  "use strict";
  var COLORS = ["#2563eb", "#ea580c", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777"];
  var KEEP = 150; // points kept for an accumulated chart (5 minutes at 2 s)
  var plots = new Map(); // element -> {plot, key}
  var history = new Map(); // element -> {times: [], series: {}}

  // Money is often fractions of a cent: keep significant digits instead of fixed decimals.
  function tick(v) {
    if (v === 0) return "0";
    if (Math.abs(v) >= 1000) return v.toLocaleString("en-US", { maximumFractionDigits: 0 });
    return String(Number(v.toPrecision(3)));
  }

  function valueOf(u, v) {
    return v === null || v === undefined ? "--" : String(Number(v.toPrecision(4)));
  }

  function accumulate(el, chart) {
    var h = history.get(el) || { times: [], series: {} };
    var n = h.times.length;
    h.times.push(chart.times[0]);
    Object.keys(chart.series).forEach(function (name) {
      if (!h.series[name]) h.series[name] = new Array(n).fill(null);
    });
    Object.keys(h.series).forEach(function (name) {
      var v = chart.series[name];
      h.series[name].push(v ? v[0] : null);
      if (h.series[name].length > KEEP) h.series[name].shift();
    });
    if (h.times.length > KEEP) h.times.shift();
    history.set(el, h);
    return { times: h.times, series: h.series };
  }

  function options(el, chart, names) {
    var bars = !!chart.bars;
    var labels = chart.labels || [];
    var series = [{}].concat(names.map(function (name, i) {
      var s = { label: name, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false, value: valueOf };
      if (chart.points) s.points = { show: true, size: 6, fill: COLORS[i % COLORS.length] };
      if (bars) {
        s.fill = COLORS[i % COLORS.length];
        s.paths = uPlot.paths.bars({ size: [0.35, 80], align: i % 2 ? 1 : -1 });
        s.points = { show: false };
      }
      return s;
    }));
    var opts = {
      width: Math.max(el.clientWidth, 300),
      height: 220,
      series: series,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: !bars }, y: { range: function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.1 : 1]; } } },
      axes: [{}, { size: 70, values: function (u, splits) { return splits.map(tick); } }],
    };
    if (bars) {
      opts.scales.x.range = function () { return [-0.5, Math.max(labels.length, 1) - 0.5]; };
      opts.axes[0] = {
        splits: function () { return labels.map(function (_, i) { return i; }); },
        values: function (u, splits) { return splits.map(function (i) { return labels[i] || ""; }); },
        grid: { show: false },
      };
    }
    return opts;
  }

  function draw(el, chart) {
    if (!chart) return;
    var data = chart.accumulate ? accumulate(el, chart) : chart;
    var names = Object.keys(data.series);
    var rows = [data.times].concat(names.map(function (n) { return data.series[n]; }));
    var key = names.join("|") + (chart.bars ? "#" + (chart.labels || []).join("|") : "");
    var known = plots.get(el);
    if (known && known.key === key) {
      known.plot.setData(rows);
    } else {
      if (known) known.plot.destroy();
      el.textContent = "";
      plots.set(el, { plot: new uPlot(options(el, chart, names), rows, el), key: key });
    }
    var total = 0;
    var points = 0;
    names.forEach(function (n) {
      data.series[n].forEach(function (v) {
        if (v !== null && v !== undefined) { total += v; points += 1; }
      });
    });
    el.dataset.series = names.join("|");
    el.dataset.total = String(total);
    el.dataset.points = String(points);
    el.classList.toggle("empty", names.length === 0);
  }

  function refresh(block) {
    return fetch(block.dataset.feed, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/ui/login"); return null; }
        if (!response.ok) throw new Error("dashboard feed " + block.dataset.feed + ": HTTP " + response.status);
        return response.json();
      })
      .then(function (body) {
        if (!body) return;
        block.querySelectorAll("[data-chart]").forEach(function (el) {
          draw(el, body.charts[el.dataset.chart]);
        });
        block.dataset.updated = String(body.now || Date.now() / 1000);
      });
  }

  function start() {
    document.querySelectorAll("[data-feed]").forEach(function (block) {
      var every = parseInt(block.dataset.every || "0", 10);
      var busy = false;
      function tick() {
        if (busy || document.hidden && every) return;
        busy = true;
        refresh(block).catch(function (err) { block.dataset.error = String(err); }).then(function () { busy = false; });
      }
      tick();
      if (every > 0) window.setInterval(tick, every);
    });
    window.addEventListener("resize", function () {
      plots.forEach(function (known, el) { known.plot.setSize({ width: Math.max(el.clientWidth, 300), height: 220 }); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
