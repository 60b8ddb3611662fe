"""The simulations app's ``@task`` functions, where the JSON API's allow-list finds them.

Each kind's task runs one Simulation row by id (``run_slab(simulation_id)``); the sweep's
last step compares its points (``summarise_sweep(sweep_id)``). A kind added to
``simulations.kinds`` is listed here too (a test checks that none is missing).
"""

from __future__ import annotations

from .kinds.lorenz import run as run_lorenz
from .kinds.slab import run as run_slab
from .kinds.summary import summarise as summarise_sweep

__all__ = ["run_lorenz", "run_slab", "summarise_sweep"]
