/* Crucible's task views: the task list refreshes while open (pausable), a task's page while
 * the task is live. htmx comes from django-htmx; the task page uses fetch alone. */
(function () {
  "use strict";

  const PAUSE_KEY = "crucible.tasks.paused";
  const LIVE_STATES = ["WAITING", "QUEUED", "SCHEDULED", "PAUSED", "RUNNING"];
  const byId = (id) => document.getElementById(id);
  /* The refreshed rows of the task list, or of the simulation list. */
  const ROW_IDS = ["cr-task-rows", "cr-sim-rows"];
  const isRows = (elt) => Boolean(elt) && ROW_IDS.includes(elt.id);
  const rowsElement = () => ROW_IDS.map(byId).find(Boolean) || null;

  function paused() {
    return localStorage.getItem(PAUSE_KEY) === "true";
  }

  /* A selection, a chosen action or an open dialog would be lost to a refresh. */
  function choosing() {
    if (document.querySelector("input.action-select:checked, #action-toggle:checked")) return true;
    const action = document.querySelector("#changelist-form select[name=action]");
    return Boolean(action && action.value) || Boolean(document.querySelector("dialog[open]"));
  }

  function shouldPoll() {
    return !paused() && document.visibilityState === "visible" && !choosing();
  }

  function mark(text, failed) {
    const fresh = byId("cr-fresh");
    if (!fresh) return;
    fresh.textContent = text;
    fresh.classList.toggle("cr-fresh--failed", Boolean(failed));
  }

  function lastUpdated() {
    const snapshot = document.querySelector(".cr-rows-snapshot");
    return snapshot ? snapshot.dataset.updated : "";
  }

  function showPause() {
    const button = byId("cr-pause");
    if (!button) return;
    const on = paused();
    button.textContent = on ? "Resume" : "Pause";
    button.setAttribute("aria-pressed", String(on));
    button.title = on ? "Refresh the list again" : "Stop refreshing the list";
    if (on) mark("Paused: showing " + lastUpdated(), false);
    else mark("Updated " + lastUpdated(), false);
  }

  let asked = false; /* a refresh the operator asked for is shown even while paused */

  function refresh() {
    const rows = rowsElement();
    if (!rows) return;
    asked = true;
    htmx.trigger(rows, "cr-refresh");
  }

  function listStart() {
    document.addEventListener("click", (event) => {
      if (event.target.closest("#cr-pause")) {
        localStorage.setItem(PAUSE_KEY, String(!paused()));
        showPause();
        if (!paused()) refresh();
        else asked = false;
      } else if (event.target.closest("#cr-refresh")) {
        refresh();
      }
    });
    /* An answer that arrives after the operator paused or started choosing is dropped. */
    document.addEventListener("htmx:beforeSwap", (event) => {
      if (!isRows(event.detail.target)) return;
      if (!asked && (paused() || choosing())) event.detail.shouldSwap = false;
      asked = false;
    });
    document.addEventListener("htmx:afterSwap", (event) => {
      if (!isRows(event.detail.target)) return;
      /* Django's action checkboxes bind to the rows they found: bind the new ones. */
      const boxes = document.querySelectorAll("tr input.action-select");
      if (window.Actions && boxes.length) window.Actions(boxes);
      mark((paused() ? "Paused: showing " : "Updated ") + lastUpdated(), false);
    });
    const failed = (event) => {
      if (!isRows(event.detail.elt)) return;
      const status = event.detail.xhr ? event.detail.xhr.status : 0;
      const why = status === 403 ? " (signed out?)" : status ? " (HTTP " + status + ")" : " (no answer)";
      mark("Update failed" + why + ": showing " + lastUpdated(), true);
    };
    document.addEventListener("htmx:responseError", failed);
    document.addEventListener("htmx:sendError", failed);
    document.addEventListener("visibilitychange", () => {
      if (shouldPoll()) refresh();
    });
    showPause();
  }

  /* A task's page: its first section and attempts follow the task until it ends, then the
   * whole page is read once more (result, error and log sections appear). */
  function taskStart(live) {
    const seconds = Number(live.dataset.pollSeconds) || 5;
    async function poll() {
      if (document.visibilityState !== "visible") return schedule();
      let html;
      try {
        const answer = await fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" });
        if (!answer.ok) return schedule();
        html = await answer.text();
      } catch (err) {
        return schedule();
      }
      const fresh = new DOMParser().parseFromString(html, "text/html");
      const state = fresh.querySelector(".cr-task-live");
      if (!state) return schedule();
      if (!LIVE_STATES.includes(state.dataset.state)) {
        location.reload();
        return;
      }
      const section = document.querySelector("#task_form fieldset");
      const update = fresh.querySelector("#task_form fieldset");
      if (section && update) section.replaceWith(update);
      const attempts = byId("attempts-group");
      const newer = fresh.getElementById("attempts-group");
      if (attempts && newer) attempts.replaceWith(newer);
      schedule();
    }
    function schedule() {
      setTimeout(poll, seconds * 1000);
    }
    schedule();
  }

  function start() {
    if (rowsElement()) listStart();
    const live = document.querySelector("#task_form .cr-task-live");
    if (live && LIVE_STATES.includes(live.dataset.state)) taskStart(live);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  window.crucibleTasks = { shouldPoll, refresh, paused };
})();
