"""Charts over time in a real Chromium: labelled axes, readable in light and dark, at 1366
and 420 px, with the range buttons and a queue's own page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from workers.charts import sampling
from workers.models import Heartbeat, Task, Worker
from workers.states import TaskState

from .conftest import contrast, log_in, signed_in_tab

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "/admin/worker-status/"
CHARTS = ("throughput", "failures", "depth", "wait", "memory", "cpu")

# Each chart's axis texts and drawn lines, with the colour of the box they sit on.
COLOURS_JS = """figure => {
  const opaque = c => c !== 'transparent' && !/rgba\\(.*, 0\\)$/.test(c);
  let el = figure;
  while (el && !opaque(getComputedStyle(el).backgroundColor)) el = el.parentElement;
  const texts = [...figure.querySelectorAll('.cr-chart-axis text')];
  return {
    behind: getComputedStyle(el).backgroundColor,
    texts: texts.map(t => ({text: t.textContent, fill: getComputedStyle(t).fill})),
    lines: [...figure.querySelectorAll('path.cr-chart-line')]
      .filter(p => p.getAttribute('d'))
      .map(p => getComputedStyle(p).stroke),
  };
}"""


@pytest.fixture
def history() -> None:
    """An hour of work on two queues and one worker's heartbeats, sampled by the tick's code."""
    now = datetime.now(UTC)
    worker = Worker.objects.create(node="elsewhere", state="RUNNING")
    for minute in range(2, 50, 3):
        at = now - timedelta(minutes=minute)
        state = TaskState.FAILED if minute % 9 == 0 else TaskState.SUCCEEDED
        for queue in ("default", "gpu"):
            Task.objects.create(func_path="tests.testapp.tasks.noop", timeout=60, queue=queue,
                                state=state, finished_at=at, last_attempted_at=at)
        Heartbeat.objects.create(worker=worker, at=at, rss_bytes=(60 + minute) * 2**20,
                                 cpu_percent=minute)
    Task.objects.create(func_path="tests.testapp.tasks.noop", timeout=60, queue="gpu")
    sampling.sample()


@pytest.fixture(params=[("light", 1366), ("dark", 1366), ("light", 420), ("dark", 420)],
                ids=lambda p: f"{p[0]}-{p[1]}px")
def tab(chromium: Any, live_server: Any, operator: Any,
        request: pytest.FixtureRequest) -> Iterator[Page]:
    scheme, width = request.param
    with signed_in_tab(chromium, live_server.url, STATUS, width=width, scheme=scheme) as page:
        yield page


def test_the_panel_shows_labelled_readable_charts_that_fit(history: None, tab: Page) -> None:
    for key in CHARTS:
        expect(tab.locator(f"#cr-chart-{key} svg")).to_be_visible()
    throughput = tab.locator("#cr-chart-throughput")
    expect(throughput.locator(".cr-chart-axis-title")).to_have_text(
        ["finished / min", "time (UTC)"])
    expect(throughput.locator(".cr-chart-legend")).to_contain_text("succeeded")
    expect(tab.locator("#cr-chart-memory .cr-chart-axis-title").first).to_have_text("MB")

    for key in CHARTS:
        seen = tab.locator(f"#cr-chart-{key}").evaluate(COLOURS_JS)
        labels = [t["text"] for t in seen["texts"]]
        assert len(labels) >= 8, (key, labels)  # y ticks, x ticks and both titles
        for text in seen["texts"]:
            assert contrast(text["fill"], seen["behind"]) >= 4.5, (key, text, seen["behind"])
        assert seen["lines"], f"{key}: nothing drawn"
        for stroke in seen["lines"]:
            assert contrast(stroke, seen["behind"]) >= 3, (key, stroke, seen["behind"])

    width = tab.evaluate("document.documentElement.clientWidth")
    assert tab.evaluate("document.documentElement.scrollWidth") <= width
    for box in tab.locator(".cr-chart svg").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().toJSON())"):
        assert box["left"] >= 0 and box["right"] <= width, box


def test_the_range_buttons_swap_the_charts_and_a_queue_has_its_own(history: None,
                                                                    page: Page) -> None:
    log_in(page, STATUS)
    expect(page.locator("#cr-charts")).to_have_attribute("data-range", "hour")

    page.get_by_role("link", name="Last week").click()
    expect(page.locator("#cr-charts")).to_have_attribute("data-range", "week")
    expect(page.get_by_role("link", name="Last week")).to_have_attribute("aria-current", "true")
    expect(page.locator("#cr-chart-throughput .cr-chart-axis--x text").first).to_have_text(
        re.compile(r"^\w{3} \d\d$"))  # days: "Sun 29"

    page.locator(".cr-charts-queues").get_by_role("link", name="gpu").click()
    expect(page).to_have_url(re.compile(r"/charts/queue/gpu/$"))
    expect(page.locator("#cr-charts-title")).to_have_text("Over time: queue gpu")
    expect(page.locator(".cr-chart")).to_have_count(4)
    expect(page.locator("#cr-chart-depth")).to_contain_text("queued: 1")
