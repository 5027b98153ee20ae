// A video's page: its score timeline under the review's settings; clicking it plays from there.
"use strict";
(function () {
  const svg = document.getElementById("timeline");
  if (!svg) return;
  const decision = document.getElementById("decision");
  const W = 1000, H = 120;

  fetch("/api/review/videos/" + encodeURIComponent(svg.dataset.video) + "?" + svg.dataset.query, { credentials: "same-origin" })
    .then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    })
    .then(function (answer) {
      if (!answer.ok) {
        decision.textContent = answer.data && answer.data.detail ? String(answer.data.detail) : "cannot score this video";
        return;
      }
      const v = answer.data.video;
      decision.textContent = "score " + (v.score === null ? "n/a" : v.score.toFixed(3)) + " · " +
        (v.anomalous ? "flagged" : "not flagged") + " · " + v.n_anomalous + " of " + v.n_segments + " segments flagged" +
        (v.misclassified ? " · misclassified" : "");
      window.vadDraw.timeline(svg, v.timeline, answer.data.score_range, answer.data.threshold, W, H);
    })
    .catch(function (err) {
      decision.textContent = "The server did not answer (" + (err && err.message ? err.message : "network error") + ").";
    });

  svg.addEventListener("click", function (event) {
    const box = svg.getBoundingClientRect();
    const t0 = parseFloat(svg.dataset.t0), t1 = parseFloat(svg.dataset.t1);
    if (!Number.isFinite(t0) || !Number.isFinite(t1) || !window.vadPlayFrom) return;
    window.vadPlayFrom(t0 + ((event.clientX - box.left) / box.width) * (t1 - t0));
  });
})();
