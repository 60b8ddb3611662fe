/* The log section of the task and worker pages: follow the log (keep the newest line in
 * view), pause and resume the poll, and say when the log has ended. htmx does the polling
 * and appending; this file only steers it. */
(function () {
  "use strict";

  const byId = (id) => document.getElementById(id);
  let paused = false;

  function following() {
    return !paused && document.visibilityState === "visible";
  }

  function toBottom() {
    const lines = byId("cr-log-lines");
    if (lines) lines.scrollTop = lines.scrollHeight;
  }

  function setPaused(value) {
    paused = value;
    const button = byId("cr-log-pause");
    const status = byId("cr-log-status");
    if (button) {
      button.textContent = paused ? "Resume" : "Pause";
      button.setAttribute("aria-pressed", String(paused));
    }
    if (status) {
      status.textContent = paused
        ? "Paused: new lines are not fetched."
        : "Following: new lines appear as they are written.";
    }
    if (!paused) toBottom();
  }

  function ended() {
    const section = byId("cr-log");
    const poll = byId("cr-log-poll");
    if (!section || !poll || poll.hasAttribute("hx-get")) return;
    section.dataset.live = "false";
    const button = byId("cr-log-pause");
    if (button) button.remove();
  }

  document.addEventListener("click", (event) => {
    if (event.target instanceof Element && event.target.id === "cr-log-pause") {
      setPaused(!paused);
    }
  });
  document.addEventListener("htmx:oobAfterSwap", (event) => {
    if (event.detail.target && event.detail.target.id === "cr-log-lines" && following()) toBottom();
  });
  document.addEventListener("htmx:afterSwap", ended);
  document.addEventListener("DOMContentLoaded", toBottom);

  window.crucibleLogs = { following: following };
})();
