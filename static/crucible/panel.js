/* Crucible's Worker Status panel: polling while open and visible, confirmations, and the
 * answers of the JSON API. htmx itself comes from django-htmx; this file only steers it. */
(function () {
  "use strict";

  const OPEN_KEY = "crucible.panel.open";
  const byId = (id) => document.getElementById(id);

  function panelOpen() {
    const panel = byId("cr-panel");
    return Boolean(panel) && panel.dataset.open === "true";
  }

  function dialogOpen() {
    return Boolean(document.querySelector("dialog.cr-dialog[open]"));
  }

  /* The poll's filter: no request while collapsed, hidden, or while a dialog asks. */
  function shouldPoll() {
    return panelOpen() && document.visibilityState === "visible" && !dialogOpen();
  }

  function refresh() {
    const body = byId("cr-body");
    if (body && panelOpen()) htmx.trigger(body, "cr-refresh");
  }

  function mark(text, failed) {
    const fresh = byId("cr-fresh");
    if (!fresh) return;
    fresh.textContent = text;
    fresh.classList.toggle("cr-fresh--failed", failed);
  }

  function flash(text, kind) {
    const box = byId("cr-flash");
    if (!box) return;
    box.textContent = text;
    box.className = "cr-flash cr-flash--" + kind;
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 12000 : 5000);
  }

  function setOpen(open, remember) {
    const panel = byId("cr-panel");
    const toggle = byId("cr-toggle");
    const body = byId("cr-body");
    if (!panel || !toggle || !body) return;
    panel.dataset.open = String(open);
    toggle.setAttribute("aria-expanded", String(open));
    body.hidden = !open;
    if (remember) localStorage.setItem(OPEN_KEY, String(open));
    if (open) refresh();
  }

  function json(xhr) {
    try {
      return JSON.parse(xhr.responseText);
    } catch (err) {
      return null;
    }
  }

  function workerId(body) {
    if (!body) return "";
    return body.worker_id ?? body.id ?? (body.worker && body.worker.worker_id) ?? "";
  }

  /* Sends the element's data-json (or {}) as the JSON body the API expects. */
  htmx.defineExtension("cr-json", {
    onEvent: function (name, event) {
      if (name === "htmx:configRequest") {
        event.detail.headers["Content-Type"] = "application/json";
      }
    },
    encodeParameters: function (xhr, parameters, elt) {
      xhr.overrideMimeType("text/json");
      return elt.dataset.json || "{}";
    },
  });

  const SUCCESS = {
    "add": (body) => "Started worker " + workerId(body) + ".",
    "force-add": (body) => "Started worker " + workerId(body) + " beyond capacity.",
    "drain": (body) => "Draining worker " + workerId(body) + ": it finishes its task, then stops.",
    "drain-worker": (body) => "Draining worker " + workerId(body) + ": it finishes its task, then stops.",
    "abort": (body) => "Aborting worker " + workerId(body) + ".",
    "undrain": (body) => "Cancelled the drain of worker " + workerId(body) + ": it serves its queues again.",
    "pause": (body) => "Paused queue " + body.name + ": its tasks stay queued until you resume it.",
    "resume": (body) => "Resumed queue " + body.name + ": workers take its tasks again.",
  };

  const LIMIT_TITLES = {memory: "Insufficient memory", cores: "All cores in use", max_count: "Worker cap reached"};

  /* The limit that refused: the API names it; an older answer only has the sentence. */
  function refusingLimit(detail, reason) {
    if (detail.limit) return detail.limit;
    if (detail.forceable === false || /^WORKER_MAX_COUNT/.test(reason)) return "max_count";
    return /^memory/i.test(reason) ? "memory" : "cores";
  }

  function openDialog(id) {
    const dialog = byId(id);
    if (dialog && !dialog.open) dialog.showModal();
    return dialog;
  }

  function closeDialogs() {
    document.querySelectorAll("dialog.cr-dialog[open]").forEach((dialog) => dialog.close());
  }

  function refused(body) {
    const detail = (body && body.detail) || {};
    const reason = detail.reason || (body && body.error) || "Admission refused another worker.";
    const limit = refusingLimit(detail, reason);
    byId("cr-memory-title").textContent = LIMIT_TITLES[limit] || "At capacity";
    byId("cr-memory-reason").textContent = reason;
    document.querySelectorAll("#cr-memory [data-limit]").forEach((part) => {
      part.hidden = part.dataset.limit !== limit;
    });
    /* Force passes the memory and core limits, never WORKER_MAX_COUNT. */
    const forceable = detail.forceable !== false && limit !== "max_count";
    byId("cr-force-add").hidden = !forceable;
    byId("cr-go-on").hidden = !forceable;
    openDialog("cr-memory");
  }

  function failure(xhr, body) {
    if (xhr.status === 403) return "Not allowed (or signed out): reload the page to sign in again.";
    if (body && body.error) {
      const detail = typeof body.detail === "string" ? body.detail : "";
      return body.error + (detail ? ": " + detail : "");
    }
    return "The request failed" + (xhr.status ? " (HTTP " + xhr.status + ")" : "") + ".";
  }

  function onAction(action, xhr) {
    const body = json(xhr);
    if (xhr.status >= 200 && xhr.status < 300) {
      closeDialogs();
      flash((SUCCESS[action] || (() => "Done."))(body), "success");
    } else if (xhr.status === 409 && action === "add") {
      refused(body);
    } else {
      closeDialogs();
      flash(failure(xhr, body), "error");
    }
    refresh();
  }

  /* hx-confirm asks through a native <dialog> instead of window.confirm. */
  document.addEventListener("htmx:confirm", (event) => {
    const elt = event.detail.elt;
    if (!elt.hasAttribute("hx-confirm")) return;
    event.preventDefault();
    const dialog = byId("cr-confirm");
    byId("cr-confirm-title").textContent = elt.dataset.confirmTitle || "Are you sure?";
    byId("cr-confirm-text").textContent = event.detail.question;
    const ok = byId("cr-confirm-ok");
    const calm = Boolean(elt.dataset.confirmOk);  // not destructive: no red button
    ok.textContent = elt.dataset.confirmOk || "Abort worker";
    ok.classList.toggle("cr-button--danger", !calm);
    ok.classList.toggle("cr-button--primary", calm);
    dialog.classList.toggle("cr-dialog--calm", calm);
    byId("cr-confirm-cancel").textContent = elt.dataset.confirmCancel || "Cancel";
    ok.onclick = () => {
      ok.onclick = null;
      dialog.close();
      event.detail.issueRequest(true);
    };
    openDialog("cr-confirm");
  });

  /* An action's answer is read from its request itself, not from an event of its button:
     a refresh may replace the card (and the button, whose events then reach nobody) while
     the request is on its way. */
  document.addEventListener("htmx:beforeRequest", (event) => {
    const action = event.detail.elt.dataset && event.detail.elt.dataset.crAction;
    const xhr = event.detail.xhr;
    if (action && xhr) xhr.addEventListener("loadend", () => onAction(action, xhr), {once: true});
  });

  /* Keep open log tails open across refreshes. No refresh while a dialog asks: one that
     was on its way when the dialog opened would replace the button whose request the
     dialog confirms, and htmx drops a request from an element no longer in the page (the
     operator's confirmed action was lost). The next poll comes once the dialog closes. */
  let openDetails = [];
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.target.id !== "cr-body") return;
    if (dialogOpen()) {
      event.detail.shouldSwap = false;
      return;
    }
    openDetails = Array.from(event.detail.target.querySelectorAll("details[id][open]"), (d) => d.id);
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target.id !== "cr-body") return;
    openDetails.forEach((id) => { const d = byId(id); if (d) d.open = true; });
    fresh();
    mark("Updated " + lastUpdated(), false);
  });

  /* What the new snapshot says: ages count from now, "Drain one" only with a worker to drain. */
  let receivedAt = Date.now();
  function fresh() {
    receivedAt = Date.now();
    stale(false);
    const snapshot = document.querySelector("#cr-body .cr-snapshot");
    const drainOne = byId("cr-drain-one");
    if (snapshot && drainOne) {
      const none = snapshot.dataset.drainable === "0";
      drainOne.disabled = none;
      drainOne.title = none ? drainOne.dataset.titleDisabled : drainOne.dataset.titleEnabled;
    }
  }

  /* Dim the figures while updates fail: they are getting old, and say so. */
  function stale(failing) {
    const body = byId("cr-body");
    if (body) body.classList.toggle("cr-stale", failing);
  }

  /* The same words as the server's duration(): "42 s", "3 min 05 s", "2 h 03 min", "3 d 4 h". */
  function duration(seconds) {
    const whole = Math.max(Math.floor(seconds), 0);
    const days = Math.floor(whole / 86400);
    const hours = Math.floor(whole / 3600) % 24;
    const minutes = Math.floor(whole / 60) % 60;
    const secs = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (days) return days + " d " + hours + " h";
    if (hours) return hours + " h " + two(minutes) + " min";
    if (minutes) return minutes + " min " + two(secs) + " s";
    return secs + " s";
  }

  /* Ages keep counting from the last good update, whether or not the next one comes. */
  function tick() {
    const passed = (Date.now() - receivedAt) / 1000;
    document.querySelectorAll("#cr-body [data-tick]").forEach((el) => {
      const text = duration(parseFloat(el.dataset.tick) + passed) + (el.dataset.suffix || "");
      if (el.textContent !== text) el.textContent = text;
    });
  }
  setInterval(tick, 1000);

  /* Times come from the server's snapshot, so the mark never mixes two clocks. */
  function lastUpdated() {
    const snapshot = document.querySelector("#cr-body .cr-snapshot");
    return snapshot ? snapshot.dataset.updated : "";
  }

  function pollFailed(event) {
    if (event.detail.elt.id !== "cr-body") return;
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    const why = status === 403 ? " (signed out?)" : status ? " (HTTP " + status + ")" : " (no answer)";
    const shown = lastUpdated();
    mark("Updates failing" + why + (shown ? ": showing " + shown : ""), true);
    stale(true);
  }
  document.addEventListener("htmx:responseError", pollFailed);
  document.addEventListener("htmx:sendError", pollFailed);

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-cr-close], #cr-toggle, #cr-refresh");
    if (!target) return;
    if (target.id === "cr-toggle") setOpen(!panelOpen(), true);
    else if (target.id === "cr-refresh") refresh();
    else target.closest("dialog").close();
  });

  function start() {
    if (localStorage.getItem(OPEN_KEY) === "false") setOpen(false, false);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  window.crucible = { shouldPoll, panelOpen, refresh, setOpen };
})();
