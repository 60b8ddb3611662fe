"""What ``simulate --wait`` prints fits 80 columns: the progress line (with its ETA) and the
sweep's comparison table; log records stay off the terminal unless asked for."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from simulations import display, terminal
from simulations.follow import LINE_WIDTH, Rate, Snapshot, line
from workers.cli import quiet_console

# The comparison of a slab sweep over h and thickness, as the summary task stores it.
SLAB_SWEEP = {
    "columns": [
        {"key": "simulation", "label": "Simulation", "unit": ""},
        {"key": "h", "label": "Heat-transfer coefficient", "unit": "W/m²K"},
        {"key": "thickness", "label": "Thickness", "unit": "m"},
        {"key": "final_core_temp", "label": "Final core temperature", "unit": "°C"},
        {"key": "final_surface_temp", "label": "Final surface temperature", "unit": "°C"},
        {"key": "biot", "label": "Biot number", "unit": ""},
        {"key": "steps", "label": "Time steps", "unit": ""},
        {"key": "dt", "label": "Time step", "unit": "s"},
        {"key": "t_end", "label": "Simulated time", "unit": "s"},
    ],
    "rows": [
        [2, 50, 0.05, 671.599, 662.79, 0.0277778, 62430, 0.00961076, 600],
        [13, 3200, 0.1, 33.0124, 30.5021, 0.888889, 15668, 0.0382946, 600],
    ],
}


def test_the_comparison_of_a_sweep_fits_80_columns_and_loses_nothing():
    headings, rows = display.comparison_rows(SLAB_SWEEP)
    assert len("  ".join(headings)) > 160, "about as wide as the table was printed before"

    lines = terminal.table(headings, rows)

    assert max(len(text) for text in lines) <= 80
    words = " ".join(lines).split()
    for text in [*headings, *(cell for row in rows for cell in row)]:
        assert all(word in words for word in text.split()), text
    assert [text.split()[0] for text in lines if text[:2] in ("2 ", "13")] == ["2", "13"] * 2, \
        "each block repeats the simulation column"


def test_a_cell_wider_than_the_terminal_is_cut_with_a_mark():
    lines = terminal.table(["Simulation", "Note"], [["1", "x" * 200]])

    assert max(len(text) for text in lines) <= 80
    assert lines[-1].endswith("…")


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "0s"), (45, "45s"), (185, "3m 05s"), (7800, "2h 10m"), (90000, "1d 1h")])
def test_durations_read_as_a_person_would_say_them(seconds, text):
    assert terminal.duration(seconds) == text


def test_the_eta_comes_from_the_progress_rate_since_following_began():
    rate = Rate(started=100.0, fraction=0.2)

    assert rate.eta(0.2, 110.0) is None, "no progress yet: no rate"
    assert rate.eta(0.3, 101.0) is None, "too short a time to tell"
    assert rate.eta(0.6, 110.0) == pytest.approx(10.0), "0.4 in 10 s: 0.4 left takes 10 s"
    assert rate.eta(1.0, 110.0) is None, "done"


def test_the_progress_line_fits_and_keeps_its_eta_when_cut():
    snap = Snapshot(0.31, Counter({"QUEUED": 12, "RUNNING": 2, "SUCCEEDED": 30, "WAITING": 1}),
                    message="step 156000/1561600, t = 6.0 s of a long simulation")

    text = line(snap, eta=754)

    assert len(text) <= LINE_WIDTH < 80, "a terminal of 80 redraws it in place"
    assert text.startswith("[######..............]  31%  ETA 12m 34s  12 queued, 2 running")
    assert text.endswith("…")


def test_log_records_reach_the_console_only_from_verbosity_2(capsys):
    console = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(console)
    try:
        with quiet_console(verbosity=1):
            logging.getLogger("simulations.services").info("sweep 1: 4 points of slab")
            logging.getLogger("simulations.services").warning("disk nearly full")
        with quiet_console(verbosity=2):
            logging.getLogger("simulations.services").info("shown when asked for")
        assert console.level == logging.NOTSET, "restored afterwards"
    finally:
        root.removeHandler(console)

    printed = capsys.readouterr().err
    assert "sweep 1" not in printed
    assert "disk nearly full" in printed and "shown when asked for" in printed
