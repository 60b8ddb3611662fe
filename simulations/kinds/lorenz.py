"""Kind ``lorenz``: an external program (simulations/programs/lorenz.py) run in the work dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.tasks import task

from .. import external, registry, runner
from ..schema import Param, Params, ParamType, Schema, real, whole

# The executor (interpreter, Django) plus the program's own small interpreter.
PROCESS_BASELINE_MB = 100
TRAJECTORY_FILE = "lorenz.csv"
RESULT_FILE = "lorenz_result.json"

REAL, WHOLE = ParamType.FLOAT, ParamType.INT
SCHEMA = Schema((
    Param("sigma", REAL, "sigma (Prandtl number)", 10.0, "", 0.0, 100.0),
    Param("rho", REAL, "rho (Rayleigh number)", 28.0, "", 0.0, 500.0),
    Param("beta", REAL, "beta (geometric factor)", 8 / 3, "", 0.0, 50.0),
    Param("dt", REAL, "Time step", 0.01, "", 1e-5, 0.05),
    Param("steps", WHOLE, "Steps", 10_000, "", 1, 100_000_000),
    Param("stride", WHOLE, "Write every N-th step", 10, "", 1, 1_000_000),
    Param("x0", REAL, "x(0)", 1.0, "", -100.0, 100.0),
    Param("y0", REAL, "y(0)", 1.0, "", -100.0, 100.0),
    Param("z0", REAL, "z(0)", 1.0, "", -100.0, 100.0),
))

PROGRAM = external.Program(
    script="lorenz.py",
    arguments=(
        "--sigma={sigma!r}", "--rho={rho!r}", "--beta={beta!r}", "--dt={dt!r}",
        "--steps={steps:d}", "--stride={stride:d}", "--x0={x0!r}", "--y0={y0!r}", "--z0={z0!r}",
        f"--output={TRAJECTORY_FILE}", f"--summary={RESULT_FILE}",
    ),
)


def memory_mb(params: Params) -> int:
    return PROCESS_BASELINE_MB


def compute(params: Params, directory: Path, progress: runner.Progress) -> dict[str, Any]:
    reals = ("sigma", "rho", "beta", "dt", "x0", "y0", "z0")
    typed: Params = {name: real(params, name) for name in reals}
    typed |= {name: whole(params, name) for name in ("steps", "stride")}
    external.run(PROGRAM, typed, directory, progress)
    result: dict[str, Any] = json.loads((directory / RESULT_FILE).read_text())
    return result


@task
def run(simulation_id: int) -> dict[str, Any]:
    """Integrate the Lorenz system with the external program for one Simulation row."""
    return runner.execute(simulation_id, compute)


KIND = registry.register(registry.Kind(
    name="lorenz",
    label="Lorenz system (external program)",
    task=run,
    schema=SCHEMA,
    memory_mb=memory_mb,
    description=(
        "Runs simulations/programs/lorenz.py, an RK4 integrator of the Lorenz equations, "
        "in the work directory; its output goes to the task log and program.log."
    ),
    metrics=(
        registry.Metric("lobe_switches", "Lobe switches"),
        registry.Metric("max_abs_x", "max |x|"),
        registry.Metric("final_x", "Final x"),
        registry.Metric("final_y", "Final y"),
        registry.Metric("final_z", "Final z"),
        registry.Metric("t_end", "Simulated time"),
    ),
    curves=registry.Curves(TRAJECTORY_FILE, "Trajectory", "t", "x, y, z"),
))
