"""python manage.py workers add|drain|undrain|abort|list|tick: the operations the panel calls."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from workers import launcher, monitor
from workers.cli import positive_int
from workers.exceptions import AdmissionRefused, CrucibleError
from workers.models import Task, Worker
from workers.states import TaskState


class Command(BaseCommand):
    help = "Add, drain, abort and list workers, or run the monitor tick once."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(
            dest="action", required=True, parser_class=argparse.ArgumentParser
        )
        add = sub.add_parser("add", help="Start workers on this machine.")
        add.add_argument("--count", type=positive_int, default=1)
        add.add_argument(
            "--force", action="store_true",
            help="Start beyond the memory and core limits (never beyond WORKER_MAX_COUNT).",
        )
        add.add_argument("--queue", action="append", dest="queues")
        drain = sub.add_parser("drain", help="Let a worker finish its task and stop.")
        drain.add_argument("worker_id", nargs="?", type=positive_int)
        undrain = sub.add_parser(
            "undrain", help="Cancel an operator's drain: the worker serves its queues again."
        )
        undrain.add_argument("worker_id", type=positive_int)
        abort = sub.add_parser("abort", help="Stop a worker now; its task is requeued.")
        abort.add_argument("worker_id", type=positive_int)
        sub.add_parser("list", help="Show workers.")
        sub.add_parser("tick", help="Run the monitor tick once.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            getattr(self, f"do_{action}")(options)
        except AdmissionRefused as exc:
            hint = " Use --force to start anyway." if exc.forceable else ""
            raise CommandError(f"{exc}{hint}") from exc
        except CrucibleError as exc:
            raise CommandError(str(exc)) from exc

    def do_add(self, options: dict[str, Any]) -> None:
        for worker in launcher.add(options["count"], force=options["force"],
                                   queues=options["queues"]):
            self.stdout.write(f"started worker {worker.pk} (pid {worker.pid})")

    def do_drain(self, options: dict[str, Any]) -> None:
        worker = launcher.drain(options["worker_id"])
        self.stdout.write(f"draining worker {worker.pk}")

    def do_undrain(self, options: dict[str, Any]) -> None:
        worker = launcher.undrain(options["worker_id"])
        self.stdout.write(f"cancelled the drain of worker {worker.pk}: it serves its queues again")

    def do_abort(self, options: dict[str, Any]) -> None:
        worker = launcher.abort(options["worker_id"])
        if not worker.is_active:
            raise CommandError(f"worker {worker.pk} is already {worker.state}")
        self.stdout.write(f"aborting worker {worker.pk}")

    def do_list(self, options: dict[str, Any]) -> None:
        running = dict(Task.objects.filter(state=TaskState.RUNNING).values_list("worker_id", "id"))
        now = timezone.now()
        header = (
            f"{'ID':>5} {'STATE':<9} {'PID':>7} {'NODE':<16} {'HEARTBEAT':>9} {'RSS MB':>7} TASK"
        )
        self.stdout.write(header)
        for worker in Worker.objects.order_by("id"):
            beat = "-"
            if worker.last_heartbeat:
                beat = f"{(now - worker.last_heartbeat).total_seconds():.0f}s"
            rss = f"{worker.rss_bytes / 2**20:.0f}" if worker.rss_bytes else "-"
            task = running.get(worker.pk, "-")
            self.stdout.write(
                f"{worker.pk:>5} {worker.state:<9} {worker.pid or '-':>7} {worker.node[:16]:<16}"
                f" {beat:>9} {rss:>7} {task}"
            )

    def do_tick(self, options: dict[str, Any]) -> None:
        report = monitor.tick()
        self.stdout.write(
            f"startup timeouts {report.timed_out}, gone {report.gone}, killed {report.killed},"
            f" reclaimed tasks {report.reclaimed}, pruned {report.pruned_tasks} tasks,"
            f" {report.pruned_workers} workers and {report.pruned_samples} samples"
        )
