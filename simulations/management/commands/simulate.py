"""python manage.py simulate KIND --param name=value ... [--sweep name=v1,v2] [--wait]"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from simulations import display, follow, grid, registry, services, terminal, workdir
from simulations.exceptions import InvalidParameters, UnknownKind
from simulations.models import Simulation, Sweep
from simulations.registry import Kind
from workers.cli import quiet_console, seconds

SITE = "http://127.0.0.1:8000"  # where `make run` serves the admin


def assignment(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected name=value, got {raw!r}")
    return name.strip(), value.strip()


def axis(raw: str) -> tuple[str, list[str]]:
    try:
        return grid.parse_axis(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Command(BaseCommand):
    help = (
        "Submit a simulation of KIND (or a sweep over a parameter grid) and print its ids; "
        "with --wait, show its progress and result. --describe lists KIND's parameters."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", metavar="KIND",
                            help="The simulation kind, e.g. slab or lorenz.")
        parser.add_argument("--param", "-p", action="append", type=assignment, default=[],
                            metavar="NAME=VALUE", help="A parameter (repeatable).")
        parser.add_argument("--sweep", action="append", type=axis, default=[],
                            metavar="NAME=V1,V2,...", help="A sweep axis (repeatable).")
        parser.add_argument("--name", default="", help="A name to find it by in the admin.")
        parser.add_argument("--priority", default="0", help="-100..100, higher runs first")
        parser.add_argument("--timeout", default=None, help="seconds one attempt may run")
        parser.add_argument("--wait", action="store_true", help="Follow it to the end.")
        parser.add_argument("--poll", type=seconds, default=0.5, help=argparse.SUPPRESS)
        parser.add_argument("--describe", action="store_true",
                            help="List KIND's parameters and exit.")
        parser.add_argument("--site", default=SITE, metavar="URL",
                            help=f"Where the admin is served, for the link printed "
                                 f"(default {SITE}, as `make run` serves it).")

    def handle(self, *args: Any, **options: Any) -> None:
        with quiet_console(options["verbosity"]):
            self._handle(options)

    def _handle(self, options: dict[str, Any]) -> None:
        try:
            kind = registry.get(options["kind"])
        except UnknownKind as exc:
            raise CommandError(str(exc)) from exc
        if options["describe"]:
            self._describe(kind)
            return
        params = self._parameters(options["param"])
        run = services.Options(name=options["name"], priority=options["priority"],
                               timeout=options["timeout"])
        try:
            if options["sweep"]:
                submitted: Simulation | Sweep = services.submit_sweep(
                    kind.name, params, options["sweep"], run)
            else:
                submitted = services.submit(kind.name, params, run)
        except InvalidParameters as exc:
            raise CommandError(f"Refused: {exc}") from exc
        tasks = self._announce(submitted)
        self._where(submitted, options["site"])
        if options["wait"]:
            self._wait(submitted, tasks, options["poll"])

    def _parameters(self, pairs: list[tuple[str, str]]) -> dict[str, object]:
        params: dict[str, object] = {}
        for name, value in pairs:
            if name in params:
                raise CommandError(f"Refused: {name}: given twice")
            params[name] = value
        return params

    def _describe(self, kind: Kind) -> None:
        self.stdout.write(f"{kind.name}: {kind.label}\n{kind.description}\n")
        for param in kind.schema.params:
            self.stdout.write(f"  {param.name:<14} {param.label} - {param.describe()}")

    def _announce(self, submitted: Simulation | Sweep) -> list[int]:
        if isinstance(submitted, Simulation):
            self.stdout.write(f"simulation {submitted.pk} (task {submitted.task_id})")
            return [submitted.task_id] if submitted.task_id else []
        points = list(submitted.simulations.order_by("pk"))
        ids = ", ".join(str(point.pk) for point in points)
        self.stdout.write(f"sweep {submitted.pk}: simulations {ids}; "
                          f"summary task {submitted.summary_task_id}; run {submitted.run_id} "
                          f"(`manage.py runs pause|resume|cancel {submitted.run_id}`)")
        tasks = [point.task_id for point in points if point.task_id]
        return [*tasks, submitted.summary_task_id] if submitted.summary_task_id else tasks

    def _where(self, submitted: Simulation | Sweep, site: str) -> None:
        """The admin page and the work directory of what was submitted."""
        if isinstance(submitted, Simulation):
            page = reverse("admin:simulations_simulation_change", args=[submitted.pk])
            directory = workdir.for_simulation(submitted.pk)
        else:
            page = reverse("admin:simulations_sweep_change", args=[submitted.pk])
            directory = workdir.for_sweep(submitted.pk)
        self.stdout.write(f"  admin:     {site.rstrip('/')}{page}")
        self.stdout.write(f"  work dir:  {directory}")

    def _wait(self, submitted: Simulation | Sweep, tasks: list[int], poll: float) -> None:
        if not follow.workers_available():
            self.stdout.write("No worker is running yet: start one with "
                              "`manage.py runworker` or `manage.py workers add`.")
        final = follow.follow(tasks, self._write, poll, live=self.stdout.isatty())
        if not final.succeeded:
            reasons = "; ".join(f"task {task_id} {why}" for task_id, why in final.failures)
            raise CommandError(f"{submitted} did not succeed: {reasons}")
        submitted.refresh_from_db()
        if isinstance(submitted, Simulation):
            self._show_result(submitted)
        else:
            self._show_comparison(submitted)

    def _write(self, text: str, ending: str) -> None:
        self.stdout.write(text, ending=ending)
        self.stdout.flush()

    def _show_result(self, simulation: Simulation) -> None:
        kind = registry.get(simulation.kind)
        for row in display.results(kind, simulation.result):
            self.stdout.write(f"{row.label}: {row.value}")

    def _show_comparison(self, sweep: Sweep) -> None:
        headings, rows = display.comparison_rows(sweep.summary or {})
        for text in terminal.table(headings, rows):
            self.stdout.write(text)
