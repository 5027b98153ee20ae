// Search page: switch between event cards and raw segments in place, keeping the URL in step.
"use strict";
(function () {
  const toggle = document.getElementById("view-toggle");
  const events = document.getElementById("events");
  const segments = document.getElementById("segments");
  if (!toggle || !events || !segments) return;
  const labels = { events: "Show raw segments", segments: "Merge adjacent hits into events" };
  const other = (view) => (view === "events" ? "segments" : "events");

  function show(view) {
    events.hidden = view !== "events";
    segments.hidden = view !== "segments";
    toggle.dataset.view = view;
    toggle.textContent = labels[view];
    const url = new URL(window.location.href);
    url.searchParams.set("view", view);
    history.replaceState(null, "", url.pathname + "?" + url.searchParams.toString());
    const next = new URL(url.href);
    next.searchParams.set("view", other(view));
    toggle.href = next.pathname + "?" + next.searchParams.toString();
    for (const form of document.querySelectorAll("form")) {
      const field = form.querySelector("input[name=view]");
      if (field) field.value = view;
    }
    // Links to a segment bring the reader back to this view.
    for (const card of document.querySelectorAll("a.card")) {
      const link = new URL(card.href);
      const back = new URLSearchParams(link.searchParams.get("back") || "");
      back.set("view", view);
      link.searchParams.set("back", back.toString());
      card.href = link.pathname + "?" + link.searchParams.toString();
    }
  }

  toggle.addEventListener("click", function (event) {
    event.preventDefault();
    show(other(toggle.dataset.view));
  });
})();
