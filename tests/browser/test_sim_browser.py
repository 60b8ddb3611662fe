"""Simulation and sweep pages in a real Chromium, in the light and the dark theme: progress
bars and plots must read on either background."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from playwright.sync_api import Page, expect

from simulations import services
from simulations.kinds import summary
from simulations.models import Sweep
from workers.states import TaskState

from .conftest import (
    contrast,
    finish_simulation,
    log_in,
    luminance,
    rgb,
    set_task,
    signed_in_tab,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

SMALL = {"n": "11", "t_end": "600", "target_temp": "850"}
WHITE = (255, 255, 255)

# Every bar on the page: its fill, its track, and the first opaque background behind it.
BARS_JS = """() => [...document.querySelectorAll('.sim-bar')].map(bar => {
  const opaque = c => c !== 'transparent' && !/rgba\\(.*, 0\\)$/.test(c);
  let el = bar.parentElement, page = null;
  while (el && !page) {
    const c = getComputedStyle(el).backgroundColor;
    if (opaque(c)) page = c;
    el = el.parentElement;
  }
  return {fill: getComputedStyle(bar.firstElementChild).backgroundColor,
          track: getComputedStyle(bar).backgroundColor, page: page};
})"""

PLOT_BACKGROUND_JS = """img => {
  const opaque = c => c !== 'transparent' && !/rgba\\(.*, 0\\)$/.test(c);
  let el = img.parentElement;
  while (el && !opaque(getComputedStyle(el).backgroundColor)) el = el.parentElement;
  return {own: getComputedStyle(img).backgroundColor,
          page: getComputedStyle(el).backgroundColor};
}"""


@pytest.fixture
def tab(chromium: Any, live_server: Any, operator: Any,
        request: pytest.FixtureRequest) -> Iterator[Page]:
    """A logged-in tab whose browser prefers the light or the dark theme."""
    with signed_in_tab(chromium, live_server.url, scheme=request.param) as page:
        yield page


def half_done_sweep() -> Sweep:
    sweep = services.submit_sweep("slab", SMALL, [("h", ["500", "1000"])])
    first, second = sweep.simulations.order_by("pk")
    finish_simulation(first)
    set_task(second.task_id, state=TaskState.RUNNING, progress=0.3)
    return sweep


def finished_sweep() -> Sweep:
    sweep = services.submit_sweep("slab", SMALL, [("h", ["500", "1000", "2000"])])
    for point in sweep.simulations.all():
        finish_simulation(point)
    summary.summarise.call(sweep_id=sweep.pk)
    set_task(sweep.summary_task_id, state=TaskState.SUCCEEDED, finished_at=timezone.now())
    return sweep


def assert_theme(page: Page, scheme: str) -> tuple[int, int, int]:
    """The page is drawn in the theme asked for; its background."""
    body = rgb(page.evaluate("getComputedStyle(document.body).backgroundColor"))
    assert (luminance(body) < 0.05) == (scheme == "dark"), body
    return body


@pytest.mark.parametrize("tab", ["light", "dark"], indirect=True)
def test_progress_bars_stand_out_from_their_track_and_the_page(tab, crucible):
    """In the dark theme the fill was #264b5d on #212121 (1.7:1); in the light one 2.3:1."""
    running = services.submit("slab", SMALL)
    set_task(running.task_id, state=TaskState.RUNNING, progress=0.42)
    sweep = half_done_sweep()
    pages = [
        reverse("admin:simulations_simulation_change", args=[running.pk]),
        reverse("admin:simulations_sweep_change", args=[sweep.pk]),
        reverse("admin:simulations_simulation_changelist"),
    ]
    scheme = "dark" if tab.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") \
        else "light"
    for path in pages:
        tab.goto(path)
        assert_theme(tab, scheme)
        bars = tab.evaluate(BARS_JS)
        assert bars, f"no progress bar on {path}"
        for bar in bars:
            fill, track, behind = rgb(bar["fill"]), rgb(bar["track"]), rgb(bar["page"])
            assert contrast(fill, track) >= 3, (path, scheme, bar)
            assert contrast(fill, behind) >= 3, (path, scheme, bar)


def drawn_colours(svg: str) -> set[str]:
    return set(re.findall(r"(?:fill|stroke):\s*(#[0-9a-fA-F]{6})", svg))


def corner_of(png: bytes) -> tuple[tuple[int, int, int], int]:
    """The colour and the alpha of a pixel near the top left corner."""
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    red, green, blue, alpha = image.getpixel((2, 2))  # type: ignore[misc]
    return (red, green, blue), alpha


@pytest.mark.parametrize("tab", ["dark"], indirect=True)
def test_plots_are_transparent_and_their_lines_read_in_the_dark_theme(tab, crucible):
    """They were drawn on white, a white block in the dark page."""
    simulation = services.submit("slab", SMALL)
    finish_simulation(simulation)
    sweep = finished_sweep()

    tab.goto(reverse("admin:simulations_simulation_change", args=[simulation.pk]))
    body = assert_theme(tab, "dark")
    plot = tab.locator("img.sim-plot")
    backgrounds = plot.evaluate(PLOT_BACKGROUND_JS)
    assert rgb(backgrounds["own"]) == (0, 0, 0) and backgrounds["own"].endswith(", 0)")
    behind = rgb(backgrounds["page"])
    assert luminance(behind) < 0.05, "the plot sits on the dark page"
    svg = tab.request.get(plot.get_attribute("src") or "").text()
    assert re.search(r'<g id="patch_1">\s*<path[^>]*style="fill: none"', svg), \
        "the figure has no background of its own"
    colours = drawn_colours(svg)
    assert len(colours) >= 3, "two curves and the axes' ink"
    for colour in colours:
        assert contrast(rgb(colour), behind) >= 3, colour
        assert contrast(rgb(colour), WHITE) >= 3, colour
    seen, _ = corner_of(plot.screenshot())
    assert contrast(seen, body) < 1.1, f"what the eye sees at the corner is the page: {seen}"

    tab.goto(reverse("admin:simulations_sweep_change", args=[sweep.pk]))
    comparison = tab.locator("img.sim-plot")
    served = tab.request.get(comparison.get_attribute("src") or "").body()
    assert corner_of(served)[1] == 0, "the comparison PNG is transparent"
    seen, _ = corner_of(comparison.screenshot())
    assert contrast(seen, body) < 1.1, f"the corner seen is the page: {seen}"


POLLED = 15_000  # ms: a poll a second, on a busy machine
# The fill, as drawn, covers half of its track.
HALF_DRAWN = """row => {
  const track = document.querySelector(row + ' .cr-progress');
  const fill = track && track.querySelector('.cr-progress-fill');
  if (!fill) return false;
  const half = track.getBoundingClientRect().width / 2;
  return Math.abs(fill.getBoundingClientRect().width - half) <= 2;
}"""


def test_the_panel_shows_a_sweep_s_progress_and_follows_it(page, crucible):
    sweep = services.submit_sweep("slab", SMALL, [("h", ["500", "1000"])])
    first, second = sweep.simulations.order_by("pk")
    log_in(page, "/admin/worker-status/")
    row = page.locator(f"#sweep-{sweep.pk}")
    expect(row).to_contain_text("0 of 2", timeout=POLLED)

    set_task(first.task_id, state=TaskState.SUCCEEDED, finished_at=timezone.now())

    expect(row).to_contain_text("1 of 2", timeout=POLLED)  # the next poll brings it
    expect(row.locator(".cr-progress-fill")).to_have_attribute("style", "width: 50%")
    page.wait_for_function(HALF_DRAWN, arg=f"#sweep-{sweep.pk}", timeout=POLLED)

    set_task(second.task_id, state=TaskState.SUCCEEDED, finished_at=timezone.now())
    set_task(sweep.summary_task_id, state=TaskState.SUCCEEDED, finished_at=timezone.now())
    expect(row).to_have_count(0, timeout=POLLED)  # an ended sweep leaves the panel


@pytest.mark.parametrize("width", [1366, 420])
def test_the_panel_s_sweeps_fit_the_width(page, crucible, width):
    sweep = services.submit_sweep("slab", SMALL, [("h", ["500", "1000"])],
                                  services.Options(name="a sweep with a rather long name " * 3))
    first = sweep.simulations.order_by("pk").first()
    assert first is not None
    set_task(first.task_id, state=TaskState.FAILED, finished_at=timezone.now())
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, "/admin/worker-status/")
    tile = page.locator("#cr-sweeps")
    expect(tile).to_contain_text("1 failed", timeout=POLLED)

    sizes = page.evaluate("""() => ({
      page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
      tile: [document.querySelector('#cr-sweeps').scrollWidth,
             document.querySelector('#cr-sweeps').clientWidth]})""")

    assert sizes["page"][0] <= sizes["page"][1], f"the page scrolls sideways: {sizes}"
    assert sizes["tile"][0] <= sizes["tile"][1], f"the table overflows its tile: {sizes}"
    bar = tile.locator(".cr-progress").bounding_box()
    assert bar is not None and bar["width"] >= 40, "the bar keeps a readable width"
