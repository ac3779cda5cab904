// The report's charts: uPlot line charts over seconds from the run's origin,
// each with the chaos log's fault windows shaded by a uPlot plugin. The
// data is window.ledgerproofReport, written by the reports package.
(function () {
  "use strict";
  var data = window.ledgerproofReport;
  // ledgerproofShaded[chart] is how many fault windows the plugin drew on
  // that chart's canvas at its last redraw (the report's test reads it).
  var shaded = (window.ledgerproofShaded = {});
  var charts = (window.ledgerproofCharts = []);
  var windows = data.faultWindows || [];

  function withAlpha(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  // faultWindowsPlugin shades every fault window behind the series
  // (drawClear runs after the canvas is cleared, before the grid and the
  // lines) and writes each window's number at its top edge (draw runs last).
  function faultWindowsPlugin(name) {
    function span(u, w) {
      var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
      var x0 = u.valToPos(w.start_seconds, "x", true);
      var x1 = w.marker ? x0 : u.valToPos(w.end_seconds, "x", true);
      var minWidth = 2 * uPlot.pxRatio;
      if (x1 - x0 < minWidth) x1 = x0 + minWidth;
      x0 = Math.max(x0, left);
      x1 = Math.min(x1, right);
      return x1 > x0 ? [x0, x1] : null;
    }
    return {
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx, drawn = 0;
          ctx.save();
          windows.forEach(function (w) {
            var s = span(u, w);
            if (!s) return;
            ctx.fillStyle = withAlpha(w.color, w.marker ? 0.8 : 0.16);
            ctx.fillRect(s[0], u.bbox.top, s[1] - s[0], u.bbox.height);
            ctx.fillStyle = withAlpha(w.color, 0.9);
            ctx.fillRect(s[0], u.bbox.top, s[1] - s[0], 3 * uPlot.pxRatio);
            drawn++;
          });
          ctx.restore();
          shaded[name] = drawn;
        }],
        draw: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.font = (11 * uPlot.pxRatio) + "px sans-serif";
          ctx.textBaseline = "top";
          windows.forEach(function (w) {
            var s = span(u, w);
            if (!s) return;
            var label = "#" + w.number + " " + w.target;
            ctx.fillStyle = w.color;
            ctx.fillText(label, s[0] + 3 * uPlot.pxRatio, u.bbox.top + 5 * uPlot.pxRatio);
          });
          ctx.restore();
        }],
      },
    };
  }

  var rightAxisSize = 60, axisLabelSize = 30;

  function seconds(v) {
    return v == null ? "" : v.toFixed(1) + " s";
  }

  function chartWidth(element) {
    return Math.max(320, element.clientWidth || element.parentNode.clientWidth || 900);
  }

  function makeChart(id, title, set, seriesOptions, extra) {
    var element = document.getElementById(id);
    if (!element || !set || !set.x || set.x.length === 0) return;
    var options = {
      title: title,
      width: chartWidth(element),
      height: 260,
      plugins: [faultWindowsPlugin(id)],
      cursor: { sync: { key: "ledgerproof" } },
      scales: { x: { time: false, range: [data.xMin, data.xMax] } },
      // Every chart keeps room for a right axis (only the batch chart has
      // one), so the plotting areas line up and a fault window sits at the
      // same place on every chart.
      padding: [12, extra.axes ? 8 : rightAxisSize + axisLabelSize + 8, 0, 0],
      series: [{ label: "time", value: function (u, v) { return seconds(v); } }].concat(seriesOptions),
      axes: [
        { label: "seconds since the load started", values: function (u, ticks) { return ticks.map(function (t) { return t == null ? "" : t + " s"; }); } },
        { label: extra.yLabel, size: 60 },
      ],
    };
    if (extra.scales) Object.assign(options.scales, extra.scales);
    if (extra.axes) options.axes = options.axes.concat(extra.axes);
    if (extra.yAxis) Object.assign(options.axes[1], extra.yAxis);
    var chart = new uPlot(options, [set.x].concat(set.lines), element);
    chart.ledgerproofId = id;
    charts.push(chart);
  }

  function line(label, color, extra) {
    var s = { label: label, stroke: color, width: 1.5, spanGaps: false, points: { show: false } };
    return Object.assign(s, extra || {});
  }

  makeChart("chart-throughput", "Operations completed per second, by outcome", data.throughput, [
    line("settled (ok)", "#2ca02c", { fill: "rgba(44,160,44,0.08)" }),
    line("rejected (fail)", "#1f77b4"),
    line("unknown (info)", "#ff7f0e"),
  ], { yLabel: "operations / s" });

  var ms = function (u, v) { return v == null ? "—" : (v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(1) + " ms"); };
  makeChart("chart-latency", "Latency per second (invoke → outcome), log scale", data.latency, [
    line("p50", "#1f77b4", { value: ms }),
    line("p95", "#ff7f0e", { value: ms }),
    line("p99", "#c51b7d", { value: ms }),
  ], {
    yLabel: "milliseconds",
    scales: { y: { distr: 3, log: 10 } },
    yAxis: { values: function (u, ticks) { return ticks.map(function (t) { return t == null ? "" : t >= 1000 ? t / 1000 + " s" : t + " ms"; }); } },
  });

  makeChart("chart-lag", "Consumer lag (records), summed over workers", data.lag, [
    line("lag", "#9467bd", { fill: "rgba(148,103,189,0.12)" }),
  ], { yLabel: "records" });

  makeChart("chart-batch", "Batches", data.batch, [
    line("mean batch size", "#17becf", { scale: "y" }),
    line("batches / s", "#7f7f7f", { scale: "batches" }),
  ], {
    yLabel: "records per batch",
    scales: { batches: { auto: true } },
    axes: [{ scale: "batches", side: 1, label: "batches / s", size: rightAxisSize, grid: { show: false } }],
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts.forEach(function (chart) {
        var element = document.getElementById(chart.ledgerproofId);
        chart.setSize({ width: chartWidth(element), height: 260 });
      });
    }, 100);
  });

  document.body.setAttribute("data-fault-windows", String(windows.length));
  document.body.setAttribute("data-charts", String(charts.length));
  window.ledgerproofReady = true;
})();
