"""Kind ``slab``: a steel slab cooling by convection (transient 1-D heat conduction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from django.tasks import task

from .. import registry, runner
from ..physics import slab as physics
from ..schema import Param, Params, ParamType, Schema, real, whole

# The executor itself (interpreter, Django, numpy) before the run allocates anything.
PROCESS_BASELINE_MB = 80
CURVES_FILE = "curves.csv"
PROFILE_FILE = "profile.csv"
HISTORY_FILE = "history.npz"

REAL, WHOLE, FLAG = ParamType.FLOAT, ParamType.INT, ParamType.BOOL
SCHEMA = Schema((
    Param("thickness", REAL, "Thickness", 0.1, "m", 0.001, 2.0, help="Total slab thickness"),
    Param("initial_temp", REAL, "Initial temperature", 900.0, "°C", -50.0, 2000.0),
    Param("ambient_temp", REAL, "Ambient temperature", 30.0, "°C", -100.0, 1500.0),
    Param("h", REAL, "Heat-transfer coefficient", 500.0, "W/m²K", 1.0, 1e5),
    Param("n", WHOLE, "Grid points", 51, "", 3, 100_000, help="Nodes from the centre to the face"),
    Param("t_end", REAL, "Simulated time", 600.0, "s", 1.0, 1e7),
    Param("target_temp", REAL, "Target core temperature", None, "°C", -100.0, 2000.0,
          optional=True, help="Report when the core reaches it"),
    Param("samples", WHOLE, "Output samples", 200, "", 2, 10_000),
    Param("history", FLAG, "Keep the full field", False,
          help="Save the temperature at every node and sample (n * samples floats)"),
    Param("conductivity", REAL, "Conductivity", physics.DEFAULT_CONDUCTIVITY, "W/mK", 0.1, 500.0),
    Param("density", REAL, "Density", physics.DEFAULT_DENSITY, "kg/m³", 100.0, 25_000.0),
    Param("specific_heat", REAL, "Specific heat", physics.DEFAULT_SPECIFIC_HEAT, "J/kgK",
          100.0, 5000.0),
))


def memory_mb(params: Params) -> int:
    arrays = physics.memory_estimate_mb(
        whole(params, "n"), whole(params, "samples"), history=bool(params["history"])
    )
    return PROCESS_BASELINE_MB + arrays


def memory_scale(params: Params) -> float:
    """The floats a run keeps: n x samples with the full field, else n + samples."""
    n, samples = whole(params, "n"), whole(params, "samples")
    return float(n * samples if params["history"] else n + samples)


def check(params: Params) -> None:
    """A target outside (ambient, initial) would never be reached."""
    if params["target_temp"] is None:
        return
    target = real(params, "target_temp")
    low, high = sorted((real(params, "ambient_temp"), real(params, "initial_temp")))
    if not low < target < high:
        registry.refuse(
            "target_temp",
            f"{target:g} °C is never reached: it must lie between ambient_temp and "
            f"initial_temp ({low:g}..{high:g} °C)",
        )


def compute(params: Params, directory: Path, progress: runner.Progress) -> dict[str, Any]:
    result = physics.simulate(
        real(params, "thickness"),
        real(params, "initial_temp"),
        real(params, "ambient_temp"),
        real(params, "h"),
        real(params, "t_end"),
        n=whole(params, "n"),
        target_temp=None if params["target_temp"] is None else real(params, "target_temp"),
        conductivity=real(params, "conductivity"),
        density=real(params, "density"),
        specific_heat=real(params, "specific_heat"),
        samples=whole(params, "samples"),
        history=bool(params["history"]),
        progress=progress,
    )
    write_files(result, directory)
    return result.summary()


def write_files(result: physics.SlabResult, directory: Path) -> None:
    curves = np.column_stack([result.times, result.core_temps, result.surface_temps])
    _csv(directory / CURVES_FILE, curves, "time_s,core_C,surface_C")
    _csv(directory / PROFILE_FILE, np.column_stack([result.x, result.final_profile]), "x_m,T_C")
    if result.history is not None:
        np.savez(directory / HISTORY_FILE, times=result.times, x=result.x, T=result.history)


def _csv(path: Path, rows: np.ndarray[Any, Any], header: str) -> None:
    np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%.9g")


@task
def run(simulation_id: int) -> dict[str, Any]:
    """Cool the slab of one Simulation row; curves and summary go to its work directory."""
    return runner.execute(simulation_id, compute)


KIND = registry.register(registry.Kind(
    name="slab",
    label="Cooling steel slab",
    task=run,
    schema=SCHEMA,
    memory_mb=memory_mb,
    memory_scale=memory_scale,
    check=check,
    description=(
        "Transient heat conduction in a symmetric slab cooled by convection on both faces "
        "(explicit finite differences). Cost grows with n² * t_end; memory with n * samples "
        "when the full field is kept."
    ),
    metrics=(
        registry.Metric("time_to_target", "Time to target", "s"),
        registry.Metric("final_core_temp", "Final core temperature", "°C"),
        registry.Metric("final_surface_temp", "Final surface temperature", "°C"),
        registry.Metric("biot", "Biot number"),
        registry.Metric("steps", "Time steps"),
        registry.Metric("dt", "Time step", "s"),
        registry.Metric("t_end", "Simulated time", "s"),
        registry.Metric("target_temp", "Target core temperature", "°C"),
    ),
    curves=registry.Curves(CURVES_FILE, "Core and surface temperature", "Time (s)",
                           "Temperature (°C)",
                           level_key="target_temp"),
))
