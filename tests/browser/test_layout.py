"""Every admin page fits 1366 and 420 px wide, in the light and the dark theme: no
horizontal page scroll, and no text drawn over other text (measured on the text's own boxes,
clipped as the page clips them, so "109.1 MB75 %" is caught even inside one grid cell)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page

from simulations import services
from simulations.kinds import summary
from simulations.models import Simulation, Sweep
from workers.models import Heartbeat, Node, Task, TaskAttempt, Worker
from workers.states import Outcome, TaskState, WorkerState

from .conftest import finish_simulation, set_task, signed_in_tab

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

WIDTHS = (1366, 420)
SCHEMES = ("light", "dark")
NODE = "compute-node-017.simulation-farm.example.org"  # long, as real host names are
LONG_FUNC = "simulations.kinds.slab.run_with_adaptive_time_stepping_and_radiation"
LONG_NAME = "Furnace wall, refractory brick 0.35 m, target 850 °C, radiative losses included"
MB = 2**20

# Each visible text fragment's box (one per line), clipped by every ancestor that clips.
TEXT_BOXES_JS = """() => {
  const hidden = el => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0)
        return true;
      if (e.tagName === 'DIALOG' && !e.open) return true;
      const details = e.parentElement;  // a closed <details> draws its summary alone
      if (details && details.tagName === 'DETAILS' && !details.open && e.tagName !== 'SUMMARY')
        return true;
    }
    return false;
  };
  const clipOf = el => {
    let c = {l: -1e9, t: -1e9, r: 1e9, b: 1e9};
    for (let e = el; e && e !== document.documentElement; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
        const b = e.getBoundingClientRect();
        c = {l: Math.max(c.l, b.left), t: Math.max(c.t, b.top),
             r: Math.min(c.r, b.right), b: Math.min(c.b, b.bottom)};
      }
    }
    return c;
  };
  const boxes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || hidden(el)) continue;
    if (el.closest('svg, script, style, noscript, template, option')) continue;
    const clip = clipOf(el);
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      // The glyphs' core: a line's box may reach into the next line's by its leading.
      const inset = r.height * 0.2;
      const box = {l: Math.max(r.left + 1, clip.l), r: Math.min(r.right - 1, clip.r),
                   t: Math.max(r.top + inset, clip.t), b: Math.min(r.bottom - inset, clip.b)};
      if (box.r - box.l > 1 && box.b - box.t > 1) boxes.push({box, el, text: node.textContent});
    }
  }
  const clashes = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], b = boxes[j];
      if (a.el === b.el) continue;
      if (a.box.l < b.box.r && b.box.l < a.box.r && a.box.t < b.box.b && b.box.t < a.box.b)
        clashes.push(`"${a.text.trim().slice(0, 40)}" over "${b.text.trim().slice(0, 40)}"`);
    }
  }
  return clashes.slice(0, 10);
}"""

WIDTH_JS = """() => ({page: document.documentElement.scrollWidth, viewport: window.innerWidth,
  widest: [...document.body.querySelectorAll('*')]
    .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
    .filter(el => !el.closest('dialog:not([open])'))
    .slice(0, 5).map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className)})"""


@dataclass(frozen=True)
class World:
    busy_worker: int
    failed_worker: int
    running_task: int
    failed_task: int
    finished_sim: int
    running_sim: int
    sweep: int


def _worker(number: int, state: str, **fields: Any) -> Worker:
    now = timezone.now()
    worker = Worker.objects.create(
        state=state, node=NODE, pid=100_000 + number, queues=["default", "long-simulations"],
        started_at=now - timedelta(hours=26, minutes=number), last_heartbeat=now,
        rss_bytes=int(109.1 * MB) + number * 3 * MB, cpu_percent=75.0 + number,
        labels={"gpu": "a100", "rack": "r17"}, **fields,
    )
    Heartbeat.objects.bulk_create(
        Heartbeat(worker=worker, at=now - timedelta(seconds=30 * i),
                  rss_bytes=(100 + 5 * i + number) * MB, cpu_percent=70.0)
        for i in range(12)
    )
    return worker


def _running_task(worker: Worker, number: int) -> Task:
    return Task.objects.create(
        func_path=LONG_FUNC, timeout=172_800, state=TaskState.RUNNING, worker=worker,
        attempt=1, queue="long-simulations", last_attempted_at=timezone.now() - timedelta(
            hours=3, minutes=number), progress=0.42 + number / 100,
        progress_message=f"time step 4{number}210 of 100000, max temperature 812.4 °C",
    )


def _workers() -> tuple[Worker, Worker, Task]:
    busy = [_worker(n, WorkerState.RUNNING) for n in range(4)]
    tasks = [_running_task(worker, n) for n, worker in enumerate(busy)]
    _worker(5, WorkerState.DRAINING, drain_requested_at=timezone.now())
    _worker(6, WorkerState.RUNNING)  # idle
    failed = _worker(7, WorkerState.FAILED, stopped_at=timezone.now() - timedelta(minutes=4),
                     exit_code=-9, failure_reason="Process gone: no heartbeat for 190 s and "
                     "the process no longer exists (killed by the out-of-memory killer?)",
                     log_tail="Traceback (most recent call last):\n" + "x" * 300 + "\nMemoryError")
    _worker(8, WorkerState.DEAD, stopped_at=timezone.now() - timedelta(minutes=9), exit_code=0,
            failure_reason="drained by operator")
    return busy[0], failed, tasks[0]


def _tasks() -> Task:
    now = timezone.now()
    for n in range(12):
        Task.objects.create(func_path=LONG_FUNC, timeout=600, queue="long-simulations",
                            state=TaskState.QUEUED, priority=n % 3,
                            args=[{"thickness": 0.35, "h": 1000 + n}])
    failed = Task.objects.create(
        func_path=LONG_FUNC, timeout=600, state=TaskState.FAILED, attempt=3, max_attempts=3,
        finished_at=now, error="ValueError: the time step 1.2e-05 s is below the stable "
        "minimum for a grid of 4001 cells; refine the grid or lower the conductivity",
    )
    TaskAttempt.objects.create(
        task=failed, number=3, finished_at=now, outcome=Outcome.ERROR, error=failed.error,
        traceback="Traceback (most recent call last):\n  File \"" + "/very/long/path" * 12
        + "\", line 42\nValueError: the time step is too small", log_tail="step 1\n" * 40,
    )
    return failed


def _simulations() -> tuple[Simulation, Simulation, Sweep]:
    small = {"n": "11", "t_end": "600", "target_temp": "850"}
    done = services.submit("slab", small, services.Options(name=LONG_NAME))
    finish_simulation(done)
    busy = services.submit("slab", small, services.Options(name=LONG_NAME + " (second run)"))
    set_task(busy.task_id, state=TaskState.RUNNING, progress=0.37,
              progress_message="t = 222 s of 600 s")
    sweep = services.submit_sweep("slab", small, [("h", ["500", "1000", "2000"])],
                                  services.Options(name=LONG_NAME + " sweep over h"))
    for point in sweep.simulations.all():
        finish_simulation(point)
    summary.summarise.call(sweep_id=sweep.pk)
    set_task(sweep.summary_task_id, state=TaskState.SUCCEEDED, finished_at=timezone.now())
    return done, busy, sweep


@pytest.fixture
def world(crucible: Any, settings: Any) -> World:
    # Production's heartbeat: the panel's sparkline window spans 30 samples of 30 s.
    settings.CRUCIBLE = dataclasses.replace(crucible, heartbeat_interval=30.0)
    done, busy_sim, sweep = _simulations()
    failed_task = _tasks()
    busy, failed_worker, running = _workers()
    Node.objects.create(name="lab-node-1.simulation-farm.example.org", memory_mb=19686, cpus=2,
                        total_mb=24000, ceiling_mb=23000)
    return World(busy.pk, failed_worker.pk, running.pk, failed_task.pk, done.pk, busy_sim.pk,
                 sweep.pk)


def pages(w: World) -> list[str]:
    def admin(name: str, *args: object) -> str:
        return reverse(f"admin:{name}", args=args)

    return [
        admin("index"),
        admin("worker_status"),
        admin("workers_worker_changelist"),
        admin("workers_worker_change", w.busy_worker),
        admin("workers_worker_change", w.failed_worker),
        admin("workers_task_changelist"),
        admin("workers_task_change", w.running_task),
        admin("workers_task_change", w.failed_task),
        admin("simulations_simulation_changelist"),
        admin("simulations_simulation_change", w.finished_sim),
        admin("simulations_simulation_change", w.running_sim),
        admin("simulations_simulation_submit"),
        admin("simulations_simulation_submit_kind", "slab"),
        admin("simulations_sweep_changelist"),
        admin("simulations_sweep_change", w.sweep),
        admin("workers_node_changelist"),
        admin("workers_run_changelist"),
    ]


@pytest.fixture(params=[(w, s) for w in WIDTHS for s in SCHEMES], ids=lambda p: f"{p[0]}px-{p[1]}")
def tab(chromium: Any, live_server: Any, operator: Any,
        request: pytest.FixtureRequest) -> Iterator[Page]:
    width, scheme = request.param
    with signed_in_tab(chromium, live_server.url, width=width, scheme=scheme) as page:
        yield page


# A list's state column must be on screen, not behind the list's own horizontal scroll.
STATES_OFF_SCREEN_JS = """() => [...document.querySelectorAll('#result_list .cr-badge')]
  .filter(b => { const r = b.getBoundingClientRect(); return r.left < 0 || r.right > innerWidth; })
  .map(b => b.textContent.trim()).slice(0, 5)"""


def problems(page: Page, url: str) -> list[str]:
    page.goto(url)
    page.wait_for_load_state("load")
    page.evaluate("document.fonts.ready")
    found = []
    width = page.evaluate(WIDTH_JS)
    if width["page"] > width["viewport"]:
        found.append(f"{url}: {width['page']} px wide in a {width['viewport']} px viewport, "
                     f"widest: {width['widest']}")
    found += [f"{url}: {clash}" for clash in page.evaluate(TEXT_BOXES_JS)]
    found += [f"{url}: state {state} off screen" for state in page.evaluate(STATES_OFF_SCREEN_JS)]
    return found


def test_every_admin_page_fits_without_overlap_or_page_scroll(tab: Page, world: World) -> None:
    found = [problem for url in pages(world) for problem in problems(tab, url)]
    assert not found, "\n".join(found)
