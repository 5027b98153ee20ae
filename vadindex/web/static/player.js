// A segment (or a video) playing from its source file: start at the segment, stop at its end once.
"use strict";
(function () {
  const player = document.getElementById("player");
  if (!player) return;
  const note = document.getElementById("player-note");
  const start = parseFloat(player.dataset.start || "0") || 0;
  const end = parseFloat(player.dataset.end || "NaN");
  let stopAt = Number.isFinite(end) ? end : null;

  function say(text) {
    if (note) note.textContent = text;
  }

  player.addEventListener("loadedmetadata", function () {
    if (start > 0 && player.currentTime < start - 0.05) player.currentTime = start;
  });
  player.addEventListener("timeupdate", function () {
    if (stopAt !== null && player.currentTime >= stopAt) {
      player.pause();
      stopAt = null; // once: the reader may play on
    }
  });
  player.addEventListener("error", function () {
    say("This video cannot be played here: its file moved, changed or was deleted, or the browser cannot play its format.");
  });

  window.vadPlayFrom = function (time, until) {
    stopAt = Number.isFinite(until) ? until : null;
    player.currentTime = time;
    player.play().catch(function () { /* the reader has not interacted yet: the player shows the frame */ });
  };

  const button = document.getElementById("play-segment");
  if (button) {
    button.addEventListener("click", function () {
      window.vadPlayFrom(start, end);
    });
  }
})();
