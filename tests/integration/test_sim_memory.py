"""A simulation kind's memory is learned per unit of the size it names."""

from __future__ import annotations

import pytest

from simulations import services
from simulations.kinds import slab
from workers.models import MemoryProfile
from workers.pool import estimates

pytestmark = pytest.mark.django_db

PARAMS = {"n": 41, "samples": 50, "t_end": 20.0}


def test_a_kind_declares_its_formula_until_its_runs_are_learned() -> None:
    first = services.submit("slab", PARAMS)
    assert first.task is not None
    assert first.task.memory_source == estimates.DECLARED
    assert first.task.memory_estimate_mb == slab.memory_mb(first.parameters)
    assert first.task.memory_scale == 41 + 50, "the floats it keeps: n + samples"

    # Three measured runs: 100 MB at 100 units, 200 MB at 200, 300 MB at 300.
    MemoryProfile.objects.create(func_path=slab.KIND.func_path, runs=3,
                                 samples=[[100.0, 100.0], [200.0, 200.0], [300.0, 300.0]])
    learned = services.submit("slab", {**PARAMS, "history": True})  # 41 x 50 units
    assert learned.task is not None
    assert learned.task.memory_scale == 41 * 50
    assert learned.task.memory_source == estimates.LEARNED
    assert learned.task.memory_estimate_runs == 3
    assert learned.task.memory_estimate_mb == learned.memory_mb == 2255  # 2050 MB + 10 %
