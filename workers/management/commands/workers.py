"""python manage.py workers add|drain|undrain|abort|list|tick|queue: what the panel does."""

from __future__ import annotations

import argparse
import getpass
import textwrap
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from workers.cli import positive_int, quiet_console
from workers.exceptions import AdmissionRefused, CrucibleError
from workers.models import Task, Worker
from workers.pool import launcher, monitor
from workers.queue import pausing
from workers.states import TaskState

WIDTH = 80


def ended_because(worker: Worker) -> str:
    """Why an ended worker ended, as the list shows it under its row."""
    reason = worker.failure_reason.strip() or "no reason recorded"
    code = f" (exit code {worker.exit_code})" if worker.exit_code else ""
    return f"{worker.state.lower()}: {reason}{code}"


class Command(BaseCommand):
    help = "Add, drain, abort and list workers, or run the monitor tick once."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(
            dest="action", required=True, parser_class=argparse.ArgumentParser,
            metavar="ACTION", help="What to do (each has its own --help).",
        )
        add = sub.add_parser("add", help="Start workers on this machine.")
        add.add_argument("--count", type=positive_int, default=1, metavar="N",
                         help="How many workers to start (default 1).")
        add.add_argument(
            "--force", action="store_true",
            help="Start beyond the memory and core limits (never beyond WORKER_MAX_COUNT).",
        )
        add.add_argument(
            "--fit", action="store_true",
            help="Start as many of N as fit now, and say how many were not started and why.",
        )
        add.add_argument("--queue", action="append", dest="queues", metavar="Q",
                         help="Queue the workers serve (repeatable; default WORKER_QUEUE_NAME).")
        drain = sub.add_parser("drain", help="Let a worker finish its task and stop.")
        drain.add_argument("worker_id", nargs="?", type=positive_int, metavar="ID",
                           help="The worker (default: an idle running one, else any running).")
        undrain = sub.add_parser(
            "undrain", help="Cancel an operator's drain: the worker serves its queues again."
        )
        undrain.add_argument("worker_id", type=positive_int, metavar="ID", help="The worker.")
        abort = sub.add_parser("abort", help="Stop a worker now; its task is requeued.")
        abort.add_argument("worker_id", type=positive_int, metavar="ID", help="The worker.")
        sub.add_parser("list", help="Show workers, and why each ended one ended.")
        sub.add_parser("tick", help="Run the monitor tick once.")
        queue = sub.add_parser("queue", help="Pause, resume or list queues.")
        verbs = queue.add_subparsers(dest="verb", required=True, metavar="VERB",
                                     parser_class=argparse.ArgumentParser,
                                     help="pause NAME, resume NAME or list.")
        for verb, text in (("pause", "Workers stop claiming the queue's tasks (they stay "
                                     "QUEUED; running ones finish)."),
                           ("resume", "Workers claim the queue's tasks again.")):
            verbs.add_parser(verb, help=text).add_argument("name", metavar="NAME",
                                                           help="The queue's name.")
        verbs.add_parser("list", help="Show each queue with tasks or a pause.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            with quiet_console(options["verbosity"]):
                getattr(self, f"do_{action}")(options)
        except AdmissionRefused as exc:
            raise CommandError(f"{exc}{self._hint(exc, options)}") from exc
        except CrucibleError as exc:
            raise CommandError(str(exc)) from exc

    def _hint(self, refused: AdmissionRefused, options: dict[str, Any]) -> str:
        if options["action"] != "add":
            return ""
        fits = launcher.fitting(options["count"], force=options["force"])
        them = "it" if fits == 1 else "them"
        hint = f" {fits} would fit now: add --fit to start {them}." if fits else ""
        return f"{hint} Use --force to start anyway." if refused.forceable else hint

    def do_add(self, options: dict[str, Any]) -> None:
        wanted = options["count"]
        limit = ""
        if options["fit"]:
            started, limit = launcher.add_what_fits(wanted, force=options["force"],
                                                    queues=options["queues"])
        else:
            started = launcher.add(wanted, force=options["force"], queues=options["queues"])
        for worker in started:
            self.stdout.write(f"started worker {worker.pk} (pid {worker.pid})")
        if len(started) < wanted:
            self.stdout.write(f"{wanted - len(started)} of {wanted} not started: {limit}")

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
            self._list_row(worker, running, now)

    def _list_row(self, worker: Worker, running: dict[int, int],
                  now: datetime) -> None:
        beat = "-"
        if worker.last_heartbeat:
            beat = f"{(now - worker.last_heartbeat).total_seconds():.0f}s"
        rss = f"{worker.rss_bytes / 2**20:.0f}" if worker.rss_bytes else "-"
        task = running.get(worker.pk, "-")
        self.stdout.write(
            f"{worker.pk:>5} {worker.state:<9} {worker.pid or '-':>7} {worker.node[:16]:<16}"
            f" {beat:>9} {rss:>7} {task}"
        )
        if not worker.is_active:
            self.stdout.write(textwrap.fill(
                ended_because(worker), WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 8,
            ))

    def do_queue(self, options: dict[str, Any]) -> None:
        name, verb = options.get("name", ""), options["verb"]
        if verb == "pause":
            done = pausing.pause(name, by=f"{getpass.getuser()} (command line)")
            self.stdout.write(f"paused queue {name}" if done else f"queue {name} was paused")
        elif verb == "resume":
            done = pausing.resume(name)
            self.stdout.write(f"resumed queue {name}" if done else f"queue {name} was not paused")
        else:
            self._queue_list()

    def _queue_list(self) -> None:
        header = f"{'QUEUE':<24} {'STATE':<7} {'QUEUED':>7} {'SCHEDULED':>9} {'RUNNING':>7}"
        self.stdout.write(header)
        for row in pausing.overview():
            state = "paused" if row.paused else "open"
            self.stdout.write(f"{row.name[:24]:<24} {state:<7} {row.queued:>7} {row.scheduled:>9}"
                              f" {row.running:>7}")
            if row.paused:
                since = timezone.localtime(row.paused.paused_at).strftime("%Y-%m-%d %H:%M")
                by = f" by {row.paused.paused_by}" if row.paused.paused_by else ""
                self.stdout.write(f"{'':6}paused since {since}{by}")

    def do_tick(self, options: dict[str, Any]) -> None:
        report = monitor.tick()
        self.stdout.write(
            f"startup timeouts {report.timed_out}, gone {report.gone}, killed {report.killed},"
            f" reclaimed tasks {report.reclaimed}, pruned {report.pruned_tasks} tasks,"
            f" {report.pruned_workers} workers and {report.pruned_samples} samples"
        )
