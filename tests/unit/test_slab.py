"""Unit tests for the explicit finite-difference slab cooling model (no Django needed)."""

from __future__ import annotations

import itertools
import json
import math
from functools import cache

import numpy as np
import pytest

from simulations.physics.slab import (
    SlabResult,
    diffusivity,
    memory_estimate_mb,
    simulate,
    stability_limit,
)

K, RHO, CP = 45.0, 7850.0, 490.0
ALPHA = K / (RHO * CP)

# Reference case: 0.1 m thick steel plate, 900 °C quenched in air/water mist, Bi = 0.56.
THICKNESS, T0, T_INF, H = 0.1, 900.0, 30.0, 500.0
HALF = THICKNESS / 2.0
BIOT = H * HALF / K
T_END = 600.0

# Max |T_fd - T_exact| observed at n=101 is ~0.005 °C (second-order in dx, ~0.12 °C at
# n=21); 0.02 °C leaves a 4x margin while still catching any first-order boundary error.
ANALYTIC_TOL_N101 = 0.02


def eigenvalues(biot: float, terms: int = 200) -> np.ndarray:
    """Roots of zeta*tan(zeta) = Bi, one per ((k)pi, (k)pi + pi/2), by vectorised bisection."""
    lo = np.arange(terms) * math.pi
    hi = lo + math.pi / 2.0

    def f(z: np.ndarray) -> np.ndarray:
        return z * np.sin(z) - biot * np.cos(z)

    f_lo = f(lo)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        same = np.sign(f_mid) == np.sign(f_lo)
        lo = np.where(same, mid, lo)
        f_lo = np.where(same, f_mid, f_lo)
        hi = np.where(same, hi, mid)
    return 0.5 * (lo + hi)


@cache
def _series(biot: float) -> tuple[np.ndarray, np.ndarray]:
    zeta = eigenvalues(biot)
    coeff = 4.0 * np.sin(zeta) / (2.0 * zeta + np.sin(2.0 * zeta))
    return zeta, coeff


def exact_temp(x_over_l: float, t: float) -> float:
    """Infinite-series plane-wall solution for the reference case (x measured from centre)."""
    zeta, coeff = _series(BIOT)
    fourier = ALPHA * t / HALF**2
    theta = np.sum(coeff * np.exp(-(zeta**2) * fourier) * np.cos(zeta * x_over_l))
    return T_INF + (T0 - T_INF) * float(theta)


def exact_time_to_core(target: float) -> float:
    lo, hi = 1e-6, 1e5
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if exact_temp(0.0, mid) > target else (lo, mid)
    return 0.5 * (lo + hi)


@cache
def reference_run(n: int) -> SlabResult:
    return simulate(THICKNESS, T0, T_INF, H, T_END, n=n)


def max_errors(result: SlabResult) -> tuple[float, float]:
    """Largest core and surface deviation from the exact solution over all t > 0 samples."""
    core_err = surf_err = 0.0
    for t, core, surface in zip(result.times, result.core_temps, result.surface_temps, strict=True):
        if t > 0:
            core_err = max(core_err, abs(core - exact_temp(0.0, t)))
            surf_err = max(surf_err, abs(surface - exact_temp(1.0, t)))
    return core_err, surf_err


# 1. Analytic solution -------------------------------------------------------------------


def test_series_solution_sanity():
    zeta = eigenvalues(BIOT)
    assert np.allclose(zeta * np.tan(zeta), BIOT, rtol=1e-10)
    # Incropera Table 5.1: zeta1 = 0.6533 at Bi = 0.5, 0.7051 at Bi = 0.6; interpolated ~0.682.
    assert zeta[0] == pytest.approx(0.682, abs=2e-3)
    assert np.all(np.diff(zeta) > 0)
    assert exact_temp(0.0, 1.0) == pytest.approx(T0, abs=1e-6)  # heat has not reached the core


@pytest.mark.parametrize("t", [10.0, 60.0, 120.0, 300.0, 600.0])
def test_matches_analytic_core_and_surface(t):
    result = reference_run(101)
    i = int(np.argmin(np.abs(result.times - t)))
    t_sample = float(result.times[i])
    assert abs(t_sample - t) < 3.5  # 200 samples over 600 s
    assert result.core_temps[i] == pytest.approx(exact_temp(0.0, t_sample), abs=ANALYTIC_TOL_N101)
    assert result.surface_temps[i] == pytest.approx(
        exact_temp(1.0, t_sample), abs=ANALYTIC_TOL_N101
    )


def test_final_profile_matches_analytic():
    result = reference_run(101)
    exact = np.array([exact_temp(x / HALF, T_END) for x in result.x])
    assert np.max(np.abs(result.final_profile - exact)) < ANALYTIC_TOL_N101


def test_grid_convergence_is_second_order():
    coarse = max(max_errors(simulate(THICKNESS, T0, T_INF, H, T_END, n=21)))
    fine = max(max_errors(reference_run(101)))
    assert fine < ANALYTIC_TOL_N101
    assert coarse < 0.5
    # dx shrinks 5x, so second order predicts a ~25x smaller error; demand at least 10x.
    assert fine < coarse / 10.0


# 2. Lumped-capacitance limit -------------------------------------------------------------


def test_lumped_limit_small_biot():
    half, biot = 0.01, 1e-3
    h = biot * K / half
    tau = RHO * CP * half / h
    result = simulate(2 * half, 500.0, 20.0, h, 2 * tau, n=3, samples=50)
    lumped = 20.0 + 480.0 * np.exp(-result.times / tau)
    # Exact theory deviates from lumped by O(Bi/6) of the temperature span: ~0.1 °C here.
    assert np.max(np.abs(result.core_temps - lumped)) < 5e-4 * 480.0
    assert result.biot == pytest.approx(biot)
    assert np.max(result.core_temps - result.surface_temps) < 1e-3 * 480.0


# 3. Energy and sanity ------------------------------------------------------------------


@pytest.mark.parametrize("h", [50.0, 500.0, 20000.0])
def test_bounded_ordered_and_monotone(h):
    result = simulate(THICKNESS, T0, T_INF, h, 300.0, n=21)
    eps = 1e-9
    for curve in (result.core_temps, result.surface_temps, result.final_profile):
        assert np.all(curve <= T0 + eps)
        assert np.all(curve >= T_INF - eps)
    assert np.all(result.core_temps >= result.surface_temps - eps)
    assert np.all(np.diff(result.core_temps) <= eps)
    assert np.all(np.diff(result.surface_temps) <= eps)
    assert np.all(np.diff(result.final_profile) <= eps)  # hottest at the centre


def test_energy_balance():
    """Heat lost through the face equals the drop in stored energy (half slab, per m^2)."""
    result = simulate(THICKNESS, T0, T_INF, H, 300.0, n=41, samples=2001)
    dx = result.x[1] - result.x[0]
    weights = np.full(result.x.size, dx)
    weights[[0, -1]] = dx / 2.0
    stored_loss = RHO * CP * float(np.sum(weights * (T0 - result.final_profile)))
    flux = H * (result.surface_temps - T_INF)
    convected = float(np.sum(0.5 * (flux[1:] + flux[:-1]) * np.diff(result.times)))
    assert convected == pytest.approx(stored_loss, rel=2e-3)


# 4. Stability ---------------------------------------------------------------------------


def independent_limit(n: int, h: float) -> float:
    dx = HALF / (n - 1)
    return dx * dx / (2.0 * ALPHA * (1.0 + h * dx / K))


@pytest.mark.parametrize(("n", "h"), [(21, 500.0), (51, 20000.0), (3, 5.0)])
def test_computed_dt_respects_limit(n, h):
    limit = independent_limit(n, h)
    assert stability_limit(THICKNESS, h, n) == pytest.approx(limit, rel=1e-12)
    result = simulate(THICKNESS, T0, T_INF, h, 500.0, n=n)
    assert result.dt <= limit
    assert result.dt >= 0.8 * limit  # safety factor 0.9, shortened to fit t_end
    assert result.steps * result.dt == pytest.approx(500.0)
    fourier = ALPHA * result.dt / (HALF / (n - 1)) ** 2
    assert fourier * (1.0 + h * HALF / (n - 1) / K) <= 0.5


def test_dt_above_limit_raises_naming_dt():
    limit = independent_limit(21, H)
    with pytest.raises(ValueError, match=r"\bdt\b.*stability limit"):
        simulate(THICKNESS, T0, T_INF, H, 10.0, n=21, dt=1.01 * limit)


def test_dt_at_limit_is_accepted_and_stays_bounded():
    limit = independent_limit(21, 20000.0)
    result = simulate(THICKNESS, T0, T_INF, 20000.0, 60.0, n=21, dt=limit)
    assert result.dt <= limit
    assert np.all(np.isfinite(result.final_profile))
    assert np.all(result.final_profile >= T_INF - 1e-9)
    assert np.all(result.final_profile <= T0 + 1e-9)


def test_explicit_dt_is_used_when_it_divides_t_end():
    assert independent_limit(11, H) > 0.5
    result = simulate(THICKNESS, T0, T_INF, H, 10.0, n=11, dt=0.5)
    assert result.dt == pytest.approx(0.5)
    assert result.steps == 20


# 5. time_to_target ----------------------------------------------------------------------


@pytest.mark.parametrize("target", [800.0, 600.0, 400.0, 300.0])
def test_time_to_target_matches_analytic(target):
    got = reference_run(101).time_to_target(target)
    assert got is not None
    # Sampled every 3 s and interpolated linearly: allow 0.5 s or 0.2 %, whichever is larger.
    expected = exact_time_to_core(target)
    assert got == pytest.approx(expected, abs=max(0.5, 2e-3 * expected))


def test_time_to_target_none_when_not_reached():
    result = reference_run(21)
    assert result.time_to_target(100.0) is None  # core is still ~283 °C at 600 s
    assert result.time_to_target(T_INF - 1.0) is None
    assert result.time_to_target(T0) == 0.0


def test_time_to_target_for_heating():
    result = simulate(THICKNESS, 20.0, 800.0, H, T_END, n=21)
    assert np.all(np.diff(result.core_temps) >= -1e-9)
    got = result.time_to_target(400.0)
    assert got is not None
    assert 0.0 < got < T_END
    assert result.time_to_target(900.0) is None


# 6. Validation --------------------------------------------------------------------------


BASE = {"thickness": THICKNESS, "initial_temp": T0, "ambient_temp": T_INF, "h": H, "t_end": 10.0}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("thickness", 0.0),
        ("thickness", -0.1),
        ("thickness", math.nan),
        ("h", 0.0),
        ("h", -5.0),
        ("h", math.inf),
        ("t_end", 0.0),
        ("n", 2),
        ("n", 10.5),
        ("n", True),
        ("samples", 1),
        ("conductivity", 0.0),
        ("density", -1.0),
        ("specific_heat", 0.0),
        ("initial_temp", math.nan),
        ("ambient_temp", -300.0),
        ("target_temp", math.inf),
        ("dt", 0.0),
        ("dt", -1.0),
    ],
)
def test_invalid_inputs_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        simulate(**{**BASE, name: value})


def test_memory_estimate():
    assert memory_estimate_mb(51, 200) == 1
    big = memory_estimate_mb(10_000_000, 200)
    assert 300 <= big <= 500  # ~5 float64 arrays of n elements
    assert memory_estimate_mb(20_000_000, 200) > big
    with pytest.raises(ValueError, match=r"\bn\b"):
        memory_estimate_mb(2, 200)
    with pytest.raises(ValueError, match=r"\bsamples\b"):
        memory_estimate_mb(51, 0)


# 7. Progress ----------------------------------------------------------------------------


def test_progress_increasing_bounded_and_ends_at_one():
    calls: list[tuple[float, str]] = []
    result = simulate(
        THICKNESS, T0, T_INF, H, 120.0, n=41, progress=lambda f, m: calls.append((f, m))
    )
    fractions = [f for f, _ in calls]
    assert result.steps > 1000
    assert 50 <= len(calls) <= 101
    assert all(b > a for a, b in itertools.pairwise(fractions))
    assert 0.0 < fractions[0] <= 0.02
    assert fractions[-1] == 1.0
    assert all(isinstance(m, str) and m for _, m in calls)


def test_progress_with_few_steps():
    calls: list[float] = []
    result = simulate(THICKNESS, T0, T_INF, H, 1.0, n=5, progress=lambda f, _m: calls.append(f))
    assert result.steps < 100
    assert len(calls) <= result.steps
    assert calls[-1] == 1.0
    assert calls == sorted(set(calls))


def test_progress_does_not_change_results():
    quiet = simulate(THICKNESS, T0, T_INF, H, 60.0, n=21)
    loud = simulate(THICKNESS, T0, T_INF, H, 60.0, n=21, progress=lambda _f, _m: None)
    assert np.array_equal(quiet.core_temps, loud.core_temps)
    assert np.array_equal(quiet.final_profile, loud.final_profile)


# 8. Determinism and result shape ----------------------------------------------------------


def test_deterministic():
    first = simulate(THICKNESS, T0, T_INF, H, 60.0, n=31, target_temp=700.0)
    second = simulate(THICKNESS, T0, T_INF, H, 60.0, n=31, target_temp=700.0)
    for field in ("times", "core_temps", "surface_temps", "x", "final_profile"):
        assert np.array_equal(getattr(first, field), getattr(second, field))
    assert first.summary() == second.summary()


def test_result_shape_and_immutability():
    result = simulate(THICKNESS, T0, T_INF, H, 60.0, n=31, samples=25)
    assert result.times.shape == result.core_temps.shape == result.surface_temps.shape == (25,)
    assert result.times[0] == 0.0
    assert result.times[-1] == pytest.approx(60.0)
    assert result.core_temps[0] == T0
    assert result.x.shape == result.final_profile.shape == (31,)
    assert result.x[0] == 0.0
    assert result.x[-1] == pytest.approx(HALF)
    assert result.final_profile[0] == result.core_temps[-1]
    assert result.final_profile[-1] == result.surface_temps[-1]
    with pytest.raises(ValueError, match="read-only"):
        result.core_temps[0] = 0.0
    with pytest.raises(AttributeError):
        result.dt = 1.0  # type: ignore[misc]


def test_diffusivity():
    assert diffusivity(K, RHO, CP) == pytest.approx(1.1699e-5, rel=1e-4)


# 9. summary ------------------------------------------------------------------------------


def test_summary_is_json_serialisable_with_target():
    result = simulate(THICKNESS, T0, T_INF, H, 120.0, n=21, target_temp=700.0)
    summary = json.loads(json.dumps(result.summary()))
    assert summary["final_core_temp"] == pytest.approx(float(result.core_temps[-1]))
    assert summary["final_surface_temp"] == pytest.approx(float(result.surface_temps[-1]))
    assert summary["steps"] == result.steps
    assert summary["dt"] == pytest.approx(result.dt)
    assert summary["biot"] == pytest.approx(BIOT)
    assert summary["target_temp"] == 700.0
    assert summary["time_to_target"] == pytest.approx(result.time_to_target(700.0))


def test_summary_without_target_or_unreached_target():
    plain = simulate(THICKNESS, T0, T_INF, H, 10.0, n=11).summary()
    assert "time_to_target" not in plain
    json.dumps(plain)
    unreached = simulate(THICKNESS, T0, T_INF, H, 10.0, n=11, target_temp=50.0).summary()
    assert unreached["time_to_target"] is None
    assert json.loads(json.dumps(unreached))["time_to_target"] is None
