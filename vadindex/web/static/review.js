// Review page: every control rescores through /api/review without reloading; the URL keeps the state.
"use strict";
(function () {
  const form = document.getElementById("review-form");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const results = $("results"), status = $("status"), errorBox = $("review-error");
  const histogram = $("histogram"), list = $("videos"), more = $("more-videos");
  const threshold = $("opt-segment_threshold");
  const PAGE = 50;
  let shown = PAGE, timer = null, controller = null;

  function params() {
    const p = new URLSearchParams();
    for (const [key, value] of new FormData(form)) {
      if (typeof value === "string" && value.trim() !== "") p.append(key, value);
    }
    return p;
  }

  function number(v, digits) {
    return v === null || v === undefined || !Number.isFinite(v) ? "n/a" : v.toFixed(digits);
  }

  function badge(text, kind) {
    const b = document.createElement("span");
    b.className = "badge " + kind;
    b.textContent = text;
    return b;
  }

  function schedule(delay) {
    if (timer) clearTimeout(timer);
    timer = setTimeout(run, delay === undefined ? 150 : delay);
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  async function run() {
    const p = params();
    history.replaceState(null, "", "/review?" + p.toString());
    if (!p.get("prompts")) {
      status.textContent = "choose a prompt set or type prompts";
      return;
    }
    if (controller) controller.abort();
    controller = new AbortController();
    const started = performance.now();
    status.textContent = "scoring…";
    p.set("videos", String(shown));
    let response, data;
    try {
      response = await fetch("/api/review?" + p.toString(), { signal: controller.signal, credentials: "same-origin" });
      data = await response.json();
    } catch (err) {
      if (err && err.name === "AbortError") return; // a newer request replaced this one
      status.textContent = "";
      showError("The server did not answer (" + (err && err.message ? err.message : "network error") + ").");
      return;
    }
    if (!response.ok) {
      status.textContent = "";
      showError(data && data.detail ? String(data.detail) : "error " + response.status);
      return;
    }
    showError("");
    status.textContent = "scored in " + Math.round(performance.now() - started) + " ms";
    render(data);
  }

  function render(data) {
    results.hidden = false;
    $("flagged-segments").textContent = data.flagged_segments.toLocaleString() + " of " + data.segments.toLocaleString();
    $("flagged-videos").textContent = data.flagged_videos.toLocaleString() + " of " + data.videos.toLocaleString();
    const m = data.metrics;
    $("metric-f1-card").hidden = !(m && "f1" in m);
    $("metric-pr-card").hidden = !(m && "precision" in m);
    $("metric-auc-card").hidden = !(m && "video_auc" in m);
    $("metric-frame-card").hidden = !(m && "frame_auc" in m);
    $("metric-wrong-card").hidden = !data.labelled;
    if (m) {
      $("metric-f1").textContent = number(m.f1, 3);
      $("metric-pr").textContent = number(m.precision, 2) + " / " + number(m.recall, 2);
      $("metric-auc").textContent = number(m.video_auc, 3);
      $("metric-frame-auc").textContent = number(m.frame_auc, 3);
    }
    $("metric-wrong").textContent = String(data.misclassified_videos);
    const range = $("opt-segment_threshold-range");
    if (range) {
      range.min = String(data.score_range[0]);
      range.max = String(data.score_range[1]);
      range.step = String((data.score_range[1] - data.score_range[0]) / 200);
      range.value = threshold.value;
    }
    window.vadDraw.histogram(histogram, data.histogram, data.threshold);
    while (list.firstChild) list.removeChild(list.firstChild);
    const query = params().toString();
    for (const v of data.listed) {
      const li = document.createElement("li");
      if (v.misclassified) li.className = "wrong";
      li.dataset.video = v.video_id;
      const head = document.createElement("div");
      const name = document.createElement("div");
      name.className = "name";
      name.textContent = v.video;
      head.appendChild(name);
      const meta = document.createElement("div");
      meta.className = "cap";
      meta.textContent = "score " + number(v.score, 3) + " · " + v.n_anomalous + " of " + v.n_segments + " segments flagged" +
        (v.best_class ? " · " + v.best_class : "");
      head.appendChild(meta);
      const badges = document.createElement("div");
      badges.appendChild(badge(v.anomalous ? "flagged" : "not flagged", v.anomalous ? "b-flag" : "b-ok"));
      if (v.label !== null) badges.appendChild(badge(v.label === 1 ? "labelled anomaly" : "labelled normal", "b-label"));
      if (v.misclassified) badges.appendChild(badge("misclassified", "b-wrong"));
      head.appendChild(badges);
      li.appendChild(head);
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", "scores over time");
      svg.setAttribute("preserveAspectRatio", "none");
      li.appendChild(svg);
      window.vadDraw.timeline(svg, v.timeline, data.score_range, data.threshold, 600, 64);
      li.addEventListener("click", function () {
        window.location.href = "/videos/" + encodeURIComponent(v.video_id) + "?" + query;
      });
      list.appendChild(li);
    }
    more.hidden = data.listed.length >= data.videos;
  }

  // The thresholds: slider and number box move together, the histogram's line at once, scores soon.
  for (const range of form.querySelectorAll("input[type=range]")) {
    const box = $(range.dataset.for);
    range.addEventListener("input", function () {
      box.value = range.value;
      if (box === threshold) window.vadDraw.moveThreshold(histogram, parseFloat(range.value));
      schedule();
    });
    box.addEventListener("input", function () {
      range.value = box.value;
      if (box === threshold) window.vadDraw.moveThreshold(histogram, parseFloat(box.value));
      schedule();
    });
  }
  for (const control of form.querySelectorAll(".controls select, .controls input[type=number]")) {
    if (!control.closest(".slider")) control.addEventListener("change", function () { schedule(); });
  }
  $("prompt-set").addEventListener("change", function () {
    if (this.value) {
      $("prompts").value = this.value;
      schedule(0);
    }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    shown = PAGE;
    schedule(0);
  });
  more.addEventListener("click", function () {
    shown += PAGE;
    schedule(0);
  });
  if (params().get("prompts")) schedule(0);
  else status.textContent = "choose a prompt set or type prompts";
})();
