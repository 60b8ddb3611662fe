"""Integrate the Lorenz system with classical RK4 and write the trajectory as CSV.

A stand-alone program (standard library only) run by the ``lorenz`` simulation kind in
the simulation's work directory. It prints ``PROGRESS <fraction> <message>`` lines that
the kind turns into task progress, and ordinary lines that end up in the task log.

    python lorenz.py --sigma 10 --rho 28 --beta 2.6667 --dt 0.01 --steps 10000
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Sequence

State = tuple[float, float, float]
PROGRESS_EVERY = 0.5  # seconds between progress lines


def derivative(state: State, sigma: float, rho: float, beta: float) -> State:
    x, y, z = state
    return sigma * (y - x), x * (rho - z) - y, x * y - beta * z


def rk4_step(state: State, dt: float, sigma: float, rho: float, beta: float) -> State:
    def shifted(base: State, slope: State, factor: float) -> State:
        return (base[0] + factor * slope[0], base[1] + factor * slope[1],
                base[2] + factor * slope[2])

    k1 = derivative(state, sigma, rho, beta)
    k2 = derivative(shifted(state, k1, dt / 2), sigma, rho, beta)
    k3 = derivative(shifted(state, k2, dt / 2), sigma, rho, beta)
    k4 = derivative(shifted(state, k3, dt), sigma, rho, beta)
    return (
        state[0] + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
        state[1] + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]),
        state[2] + dt / 6 * (k1[2] + 2 * k2[2] + 2 * k3[2] + k4[2]),
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("sigma", 10.0), ("rho", 28.0), ("beta", 8 / 3), ("dt", 0.01),
                          ("x0", 1.0), ("y0", 1.0), ("z0", 1.0)):
        parser.add_argument(f"--{name}", type=float, default=default)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--stride", type=int, default=10, help="write every N-th step")
    parser.add_argument("--output", default="lorenz.csv")
    parser.add_argument("--summary", default="lorenz_result.json")
    return parser.parse_args(argv)


def integrate(args: argparse.Namespace) -> dict[str, float | int]:
    state: State = (args.x0, args.y0, args.z0)
    switches, max_abs_x = 0, abs(state[0])
    last_report = time.monotonic()
    with open(args.output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "x", "y", "z"])
        writer.writerow([0.0, *state])
        for step in range(1, args.steps + 1):
            new = rk4_step(state, args.dt, args.sigma, args.rho, args.beta)
            if not all(math.isfinite(value) for value in new):
                raise ArithmeticError(f"the solution diverged at step {step}; try a smaller dt")
            switches += (new[0] > 0) != (state[0] > 0)
            max_abs_x = max(max_abs_x, abs(new[0]))
            state = new
            if step % args.stride == 0 or step == args.steps:
                writer.writerow([f"{step * args.dt:.9g}", *(f"{v:.9g}" for v in state)])
            if time.monotonic() - last_report >= PROGRESS_EVERY:
                last_report = time.monotonic()
                print(f"PROGRESS {step / args.steps:.6f} step {step}/{args.steps}", flush=True)
    return {"t_end": args.steps * args.dt, "steps": args.steps, "final_x": state[0],
            "final_y": state[1], "final_z": state[2], "max_abs_x": max_abs_x,
            "lobe_switches": switches}


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    print(f"lorenz: sigma={args.sigma:g} rho={args.rho:g} beta={args.beta:g} "
          f"dt={args.dt:g} steps={args.steps}", flush=True)
    started = time.monotonic()
    try:
        summary = integrate(args)
    except ArithmeticError as exc:
        print(f"lorenz: {exc}", file=sys.stderr, flush=True)
        return 2
    with open(args.summary, "w") as handle:
        json.dump(summary, handle, indent=2)
    print(f"lorenz: done in {time.monotonic() - started:.2f} s, "
          f"{summary['lobe_switches']} lobe switches", flush=True)
    print("PROGRESS 1 done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
