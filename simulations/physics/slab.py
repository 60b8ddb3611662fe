"""Transient 1-D heat conduction in a symmetric slab cooled by convection on both faces.

The half-thickness is discretised with ``n`` nodes from the centre (x = 0, insulated by
symmetry) to the surface (x = L/2, convective).  Time is marched with the explicit FTCS
scheme; the end nodes use half-cell energy balances, written as ghost nodes so that every
node shares one vectorised stencil:

* centre:  ghost T[-1] = T[1]                          (zero flux)
* surface: ghost T[n]  = T[n-2] + 2 Bi_cell (T_inf - T[n-1])

which reproduce exactly

* centre:  T0'  = T0 + 2 Fo (T1 - T0)
* surface: Ts'  = Ts + 2 Fo (T[n-2] - Ts) + 2 Fo Bi_cell (T_inf - Ts)

with Fo = alpha dt / dx**2 and Bi_cell = h dx / k.  All update coefficients are
non-negative (hence stable and bounded) when Fo <= 1/2 and Fo (1 + Bi_cell) <= 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ProgressCallback = Callable[[float, str], None]

DEFAULT_CONDUCTIVITY = 45.0  # W/(m K), plain carbon steel
DEFAULT_DENSITY = 7850.0  # kg/m^3
DEFAULT_SPECIFIC_HEAT = 490.0  # J/(kg K)
SAFETY_FACTOR = 0.9
PROGRESS_UPDATES = 100
ABSOLUTE_ZERO_C = -273.15
_BYTES_PER_MB = 1024 * 1024


@dataclass(frozen=True, eq=False)
class SlabResult:
    """Sampled output of one run; arrays are read-only, x runs from the centre to the surface."""

    times: FloatArray
    core_temps: FloatArray
    surface_temps: FloatArray
    x: FloatArray
    final_profile: FloatArray
    dt: float
    steps: int
    biot: float
    initial_temp: float
    ambient_temp: float
    target_temp: float | None = None
    history: FloatArray | None = None  # (samples, n): the full field at every sample time

    def time_to_target(self, target_core_temp: float) -> float | None:
        """First time (s) the core reaches the target, linearly interpolated; None if never."""
        core = self.core_temps
        cooling = self.initial_temp >= self.ambient_temp
        reached = core <= target_core_temp if cooling else core >= target_core_temp
        hits = np.flatnonzero(reached)
        if hits.size == 0:
            return None
        i = int(hits[0])
        if i == 0:
            return float(self.times[0])
        t0, t1 = float(self.times[i - 1]), float(self.times[i])
        c0, c1 = float(core[i - 1]), float(core[i])
        return t0 + (t1 - t0) * (c0 - target_core_temp) / (c0 - c1)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable digest of the run."""
        digest: dict[str, Any] = {
            "final_core_temp": float(self.core_temps[-1]),
            "final_surface_temp": float(self.surface_temps[-1]),
            "t_end": float(self.times[-1]),
            "steps": int(self.steps),
            "dt": float(self.dt),
            "biot": float(self.biot),
        }
        if self.target_temp is not None:
            digest["target_temp"] = float(self.target_temp)
            digest["time_to_target"] = self.time_to_target(self.target_temp)
        return digest


def diffusivity(conductivity: float, density: float, specific_heat: float) -> float:
    """Thermal diffusivity alpha = k / (rho c) in m^2/s."""
    return conductivity / (density * specific_heat)


def stability_limit(
    thickness: float,
    h: float,
    n: int,
    *,
    conductivity: float = DEFAULT_CONDUCTIVITY,
    density: float = DEFAULT_DENSITY,
    specific_heat: float = DEFAULT_SPECIFIC_HEAT,
) -> float:
    """Largest stable explicit dt (s): min over interior (Fo <= 1/2) and surface node."""
    _check_positive("thickness", thickness)
    _check_positive("h", h)
    _check_int_at_least("n", n, 3)
    _check_material(conductivity, density, specific_heat)
    dx = thickness / 2.0 / (n - 1)
    alpha = diffusivity(conductivity, density, specific_heat)
    bi_cell = h * dx / conductivity
    interior = dx * dx / (2.0 * alpha)
    surface = dx * dx / (2.0 * alpha * (1.0 + bi_cell))
    return min(interior, surface)


def memory_estimate_mb(n: int, samples: int = 200, *, history: bool = False) -> int:
    """Rough size in MB (at least 1) of the arrays a run with these sizes allocates."""
    _check_int_at_least("n", n, 3)
    _check_int_at_least("samples", samples, 2)
    state_floats = 2 * (n + 2) + n  # ping-pong state with ghosts + scratch
    output_floats = 2 * n + 3 * samples  # x, final profile, times/core/surface
    if history:
        output_floats += n * samples  # the field at every sample
    index_ints = 2 * (samples + PROGRESS_UPDATES + 1)  # checkpoint step tables
    total_bytes = 8 * (state_floats + output_floats + index_ints)
    return max(1, math.ceil(total_bytes / _BYTES_PER_MB))


def simulate(
    thickness: float,
    initial_temp: float,
    ambient_temp: float,
    h: float,
    t_end: float,
    *,
    n: int = 51,
    target_temp: float | None = None,
    conductivity: float = DEFAULT_CONDUCTIVITY,
    density: float = DEFAULT_DENSITY,
    specific_heat: float = DEFAULT_SPECIFIC_HEAT,
    samples: int = 200,
    progress: ProgressCallback | None = None,
    dt: float | None = None,
    history: bool = False,
) -> SlabResult:
    """Cool a slab of total ``thickness`` (m) from ``initial_temp`` for ``t_end`` seconds.

    Without ``dt`` the step is SAFETY_FACTOR times the stability limit; either way it is
    then shortened slightly so that an integer number of steps ends exactly at ``t_end``.
    With ``history`` the whole field is kept at every sample: ``samples * n`` floats.
    """
    _validate(
        thickness=thickness,
        initial_temp=initial_temp,
        ambient_temp=ambient_temp,
        h=h,
        t_end=t_end,
        n=n,
        target_temp=target_temp,
        samples=samples,
    )
    limit = stability_limit(
        thickness, h, n, conductivity=conductivity, density=density, specific_heat=specific_heat
    )
    step = _choose_dt(dt, limit)
    steps = max(1, math.ceil(t_end / step))
    step = t_end / steps
    dx = thickness / 2.0 / (n - 1)
    fo = diffusivity(conductivity, density, specific_heat) * step / (dx * dx)
    bi_cell = h * dx / conductivity
    stepper = _Stepper(n, initial_temp, ambient_temp, fo, bi_cell)
    times, core, surface, field = _run(stepper, steps, step, samples, progress, keep_field=history)
    return SlabResult(
        times=_frozen(times),
        core_temps=_frozen(core),
        surface_temps=_frozen(surface),
        x=_frozen(np.linspace(0.0, thickness / 2.0, n)),
        final_profile=_frozen(stepper.profile()),
        dt=step,
        steps=steps,
        biot=h * (thickness / 2.0) / conductivity,
        initial_temp=float(initial_temp),
        ambient_temp=float(ambient_temp),
        target_temp=None if target_temp is None else float(target_temp),
        history=None if field is None else _frozen(field),
    )


class _Stepper:
    """FTCS state on two ghost-padded buffers that swap roles every step."""

    def __init__(self, n: int, initial: float, ambient: float, fo: float, bi_cell: float):
        self._src: FloatArray = np.full(n + 2, float(initial))
        self._dst: FloatArray = np.empty(n + 2)
        self._scratch: FloatArray = np.empty(n)
        self._fo = fo
        self._mid_weight = (1.0 - 2.0 * fo) / fo
        self._ghost_gain = 2.0 * bi_cell
        self._ambient = float(ambient)
        self.size = n

    def advance(self, count: int) -> None:
        """March ``count`` explicit steps; buffers and slice views are reused throughout."""
        src, dst, scratch = self._src, self._dst, self._scratch
        views = (
            (src, src[:-2], src[1:-1], src[2:], dst[1:-1]),
            (dst, dst[:-2], dst[1:-1], dst[2:], src[1:-1]),
        )
        fo, mid_weight, gain, ambient = self._fo, self._mid_weight, self._ghost_gain, self._ambient
        add, multiply = np.add, np.multiply
        for i in range(count):
            cur, left, mid, right, out = views[i & 1]
            cur[0] = cur[2]
            cur[-1] = cur.item(-3) + gain * (ambient - cur.item(-2))
            add(left, right, out=out)
            multiply(mid, mid_weight, out=scratch)
            add(out, scratch, out=out)
            multiply(out, fo, out=out)
        if count & 1:
            self._src, self._dst = dst, src

    def core(self) -> float:
        return float(self._src[1])

    def surface(self) -> float:
        return float(self._src[-2])

    def profile(self) -> FloatArray:
        return self._src[1:-1].copy()

    def copy_profile(self, out: FloatArray) -> None:
        out[:] = self._src[1:-1]


def _run(
    stepper: _Stepper,
    steps: int,
    dt: float,
    samples: int,
    progress: ProgressCallback | None,
    *,
    keep_field: bool = False,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Advance between checkpoints, recording samples (and the field) and reporting progress."""
    sample_steps = _even_steps(steps, samples, include_zero=True)
    field = np.empty((sample_steps.size, stepper.size)) if keep_field else None
    report_steps = _even_steps(steps, PROGRESS_UPDATES + 1, include_zero=False)
    checkpoints = np.union1d(sample_steps, report_steps if progress is not None else sample_steps)
    sample_set = {int(s) for s in sample_steps}
    report_set = {int(s) for s in report_steps} if progress is not None else set()
    core = np.empty(sample_steps.size)
    surface = np.empty(sample_steps.size)
    done = recorded = 0
    for checkpoint in (int(c) for c in checkpoints):
        stepper.advance(checkpoint - done)
        done = checkpoint
        if checkpoint in sample_set:
            core[recorded], surface[recorded] = stepper.core(), stepper.surface()
            if field is not None:
                stepper.copy_profile(field[recorded])
            recorded += 1
        if progress is not None and checkpoint in report_set:
            progress(checkpoint / steps, f"step {checkpoint}/{steps}, t = {checkpoint * dt:.1f} s")
    return sample_steps.astype(np.float64) * dt, core, surface, field


def _even_steps(steps: int, count: int, *, include_zero: bool) -> npt.NDArray[np.int64]:
    """Up to ``count`` distinct step indices evenly spread over [0, steps], ending at steps."""
    marks = np.unique(np.rint(np.linspace(0.0, float(steps), count)).astype(np.int64))
    return marks if include_zero else marks[marks > 0]


def _choose_dt(dt: float | None, limit: float) -> float:
    if dt is None:
        return SAFETY_FACTOR * limit
    _check_positive("dt", dt)
    if dt > limit * (1.0 + 1e-12):
        raise ValueError(
            f"dt={dt:.6g} s exceeds the explicit stability limit {limit:.6g} s "
            "(Fo <= 1/2 and Fo*(1+Bi_cell) <= 1/2)"
        )
    return dt


def _validate(
    *,
    thickness: float,
    initial_temp: float,
    ambient_temp: float,
    h: float,
    t_end: float,
    n: int,
    target_temp: float | None,
    samples: int,
) -> None:
    _check_positive("thickness", thickness)
    _check_positive("h", h)
    _check_positive("t_end", t_end)
    _check_temperature("initial_temp", initial_temp)
    _check_temperature("ambient_temp", ambient_temp)
    if target_temp is not None:
        _check_temperature("target_temp", target_temp)
    _check_int_at_least("n", n, 3)
    _check_int_at_least("samples", samples, 2)


def _check_material(conductivity: float, density: float, specific_heat: float) -> None:
    _check_positive("conductivity", conductivity)
    _check_positive("density", density)
    _check_positive("specific_heat", specific_heat)


def _check_positive(name: str, value: float) -> None:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _check_temperature(name: str, value: float) -> None:
    if not _is_real(value) or not math.isfinite(value) or value < ABSOLUTE_ZERO_C:
        raise ValueError(f"{name} must be a finite temperature in °C above -273.15, got {value!r}")


def _check_int_at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _frozen(values: FloatArray) -> FloatArray:
    values.setflags(write=False)
    return values
