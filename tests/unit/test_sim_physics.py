"""The slab model's memory-hungry option: the full temperature field at every sample."""

from __future__ import annotations

import numpy as np
import pytest

from simulations.physics.slab import memory_estimate_mb, simulate

ARGS = (0.1, 900.0, 30.0, 500.0, 120.0)


def test_history_keeps_the_field_at_every_sample_and_matches_the_curves():
    result = simulate(*ARGS, n=41, samples=30, history=True)
    assert result.history is not None
    assert result.history.shape == (30, 41)
    assert np.array_equal(result.history[:, 0], result.core_temps)
    assert np.array_equal(result.history[:, -1], result.surface_temps)
    assert np.array_equal(result.history[-1], result.final_profile)
    assert np.all(result.history[0] == 900.0)
    with pytest.raises(ValueError, match="read-only"):
        result.history[0, 0] = 0.0


def test_history_changes_nothing_else():
    plain = simulate(*ARGS, n=41, samples=30)
    kept = simulate(*ARGS, n=41, samples=30, history=True)
    assert plain.history is None
    assert np.array_equal(plain.core_temps, kept.core_temps)
    assert plain.summary() == kept.summary()


def test_memory_estimate_counts_the_history():
    assert memory_estimate_mb(51, 200, history=True) == 1
    without = memory_estimate_mb(10_000, 10_000)
    with_history = memory_estimate_mb(10_000, 10_000, history=True)
    assert with_history - without == pytest.approx(10_000 * 10_000 * 8 / 2**20, abs=1)
