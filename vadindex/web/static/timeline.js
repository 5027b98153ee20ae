// Small SVG drawings shared by the review and video pages: score timelines and the score histogram.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const key in attrs) node.setAttribute(key, String(attrs[key]));
    if (parent) parent.appendChild(node);
    return node;
  }

  function clear(svg) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
  }

  // data: {start[], end[], score[], flagged[], truth[]|null}; range: [lo, hi]; threshold: number|null
  function timeline(svg, data, range, threshold, width, height) {
    clear(svg);
    const w = width, h = height, top = 4, bottom = h - 10;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    const n = data.score.length;
    if (!n) return;
    const t0 = data.start[0], t1 = data.end[n - 1] || 1;
    const span = Math.max(t1 - t0, 1e-9);
    const lo = range[0], hi = range[1], yspan = Math.max(hi - lo, 1e-9);
    const x = (t) => ((t - t0) / span) * w;
    const y = (v) => bottom - ((Math.min(Math.max(v, lo), hi) - lo) / yspan) * (bottom - top);
    el("rect", { x: 0, y: 0, width: w, height: h, fill: "#fff" }, svg);
    for (let i = 0; i < n; i++) {
      if (data.flagged[i]) {
        el("rect", { x: x(data.start[i]), y: top, width: Math.max(x(data.end[i]) - x(data.start[i]), 1),
                     height: bottom - top, fill: "#e4572e", "fill-opacity": 0.22 }, svg);
      }
      if (data.truth && data.truth[i] === 1) {
        el("rect", { x: x(data.start[i]), y: bottom + 2, width: Math.max(x(data.end[i]) - x(data.start[i]), 1),
                     height: 6, fill: "#2a9d4b" }, svg);
      }
    }
    const points = [];
    for (let i = 0; i < n; i++) {
      const v = data.score[i] === null ? lo : data.score[i];
      points.push(x(data.start[i]).toFixed(1) + "," + y(v).toFixed(1));
      points.push(x(data.end[i]).toFixed(1) + "," + y(v).toFixed(1));
    }
    el("polyline", { points: points.join(" "), fill: "none", stroke: "#1f4e99", "stroke-width": 1.5 }, svg);
    if (threshold !== null && Number.isFinite(threshold)) {
      el("line", { x1: 0, x2: w, y1: y(threshold), y2: y(threshold), stroke: "#1d2330",
                   "stroke-dasharray": "4 3", "stroke-width": 1 }, svg);
    }
    svg.dataset.t0 = t0;
    svg.dataset.t1 = t1;
  }

  // hist: {edges[], anomaly?[], normal?[], unknown[]}
  function histogram(svg, hist, threshold) {
    clear(svg);
    const w = 600, h = 150, left = 4, right = w - 4, top = 6, bottom = h - 20;
    const edges = hist.edges, bins = edges.length - 1;
    const layers = [["normal", "#9fb3d1"], ["unknown", "#9fb3d1"], ["anomaly", "#2a9d4b"]].filter((l) => hist[l[0]]);
    let most = 1;
    for (let i = 0; i < bins; i++) {
      let total = 0;
      for (const l of layers) total += hist[l[0]][i];
      most = Math.max(most, total);
    }
    const lo = edges[0], hi = edges[bins], span = Math.max(hi - lo, 1e-9);
    const x = (v) => left + ((v - lo) / span) * (right - left);
    const bw = (right - left) / bins;
    el("rect", { x: 0, y: 0, width: w, height: h, fill: "#fff" }, svg);
    for (let i = 0; i < bins; i++) {
      let base = bottom;
      for (const l of layers) {
        const c = hist[l[0]][i];
        if (!c) continue;
        const bh = (c / most) * (bottom - top);
        el("rect", { x: left + i * bw + 0.5, y: base - bh, width: Math.max(bw - 1, 0.5), height: bh, fill: l[1] }, svg);
        base -= bh;
      }
    }
    el("line", { x1: left, x2: right, y1: bottom, y2: bottom, stroke: "#5f6b7a" }, svg);
    const label = (text, at, anchor) => {
      const t = el("text", { x: at, y: h - 5, "font-size": 11, fill: "#5f6b7a", "text-anchor": anchor }, svg);
      t.textContent = text;
    };
    label(lo.toFixed(2), left, "start");
    label(hi.toFixed(2), right, "end");
    label("segment score", (left + right) / 2, "middle");
    const line = el("line", { id: "threshold-line", x1: 0, x2: 0, y1: top, y2: bottom, stroke: "#e4572e", "stroke-width": 2 }, svg);
    svg.dataset.lo = lo;
    svg.dataset.hi = hi;
    moveThreshold(svg, threshold);
    return line;
  }

  function moveThreshold(svg, threshold) {
    const line = svg.querySelector("#threshold-line");
    if (!line) return;
    const lo = parseFloat(svg.dataset.lo), hi = parseFloat(svg.dataset.hi);
    const visible = Number.isFinite(threshold) && threshold >= lo && threshold <= hi;
    const at = 4 + ((Math.min(Math.max(threshold, lo), hi) - lo) / Math.max(hi - lo, 1e-9)) * 592;
    line.setAttribute("x1", at);
    line.setAttribute("x2", at);
    line.setAttribute("visibility", visible ? "visible" : "hidden");
  }

  window.vadDraw = { timeline: timeline, histogram: histogram, moveThreshold: moveThreshold, el: el };
})();
