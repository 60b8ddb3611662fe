"""python manage.py runs start|status|list|pause|resume|cancel|summary|cleanup: runs from a
terminal."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers import runs
from workers.cli import positive_int, quiet_console, seconds
from workers.exceptions import CrucibleError
from workers.models import Run
from workers.models.run import RunState
from workers.runs import cleanup, text

ACTIONS: dict[str, Callable[[int], Run]] = {"pause": runs.pause, "resume": runs.resume}


def _who() -> str:
    return f"{getpass.getuser()} (command line)"


def non_negative(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _cancel(run_id: int) -> Run:
    return runs.cancel(run_id, by=_who())


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, RecursionError) as exc:
        raise CommandError(f"{path} is not a JSON document: {exc}") from exc


class Command(BaseCommand):
    help = "Start, watch, pause, resume and cancel runs of dependent tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION",
                                    parser_class=argparse.ArgumentParser,
                                    help="What to do (each has its own --help).")
        start = sub.add_parser("start", help="Submit a run from a JSON document and start it.")
        start.add_argument("name", metavar="NAME", help="The run's name (overrides the file's).")
        start.add_argument("--file", type=Path, required=True, metavar="RUN.json",
                           help="The run document (JSON; see docs/runs.md).")
        start.add_argument("--watch", action="store_true", help="Follow it until it ends.")
        start.add_argument("--every", type=seconds, default=1.0, help=argparse.SUPPRESS)
        status = sub.add_parser("status", help="One run's tasks, or every active run.")
        status.add_argument("-v", "--verbose", dest="detail", action="store_true",
                            help="With each task's error and node.")
        status.add_argument("run_id", nargs="?", type=positive_int, metavar="ID",
                            help="The run's id; without it, every active run.")
        listing = sub.add_parser("list", help="Runs, newest first.")
        listing.add_argument("--status", choices=[s.lower() for s in RunState.values]
                             + RunState.values, help="Only runs in this state.")
        listing.add_argument("--limit", type=positive_int, default=50, metavar="N",
                             help="Show at most N runs (default 50).")
        for verb, what in (("pause", "Stop new claims of a run's tasks (running ones finish)."),
                           ("resume", "Let a paused run's tasks be claimed again."),
                           ("cancel", "Cancel queued tasks and stop running ones.")):
            act = sub.add_parser(verb, help=what)
            act.add_argument("run_id", nargs="?", type=positive_int, metavar="ID",
                             help="The run's id (or --all).")
            act.add_argument("--all", action="store_true", help="Every active run.")
            act.add_argument("--dry-run", action="store_true",
                             help="List what --all would affect; change nothing.")
            if verb == "cancel":
                act.add_argument("--yes", action="store_true", help="Needed with --all.")
                act.add_argument("--force", action="store_true",
                                 help="Do not ask before cancelling one run.")
        sub.add_parser("summary", help="Workers, runs and tasks in one block.")
        clean = sub.add_parser("cleanup", help="Remove runs finished more than N days ago "
                               "(records and work directories) and orphaned directories.")
        clean.add_argument("--days", type=non_negative, required=True, metavar="N",
                           help="Age in days of the finished runs to remove.")
        clean.add_argument("--dry-run", action="store_true",
                           help="List what would be removed; remove nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with quiet_console(options["verbosity"]):
                getattr(self, f"do_{options['action']}")(options)
        except CrucibleError as exc:
            raise CommandError(str(exc)) from exc

    def do_start(self, options: dict[str, Any]) -> None:
        run = runs.submit(_read(options["file"]), by=_who(), name=options["name"])
        self.stdout.write(f"started run {run.pk} {run.name} ({len(runs.report(run.pk).tasks)}"
                          " tasks)")
        if options["watch"]:
            self._watch(run.pk, options["every"])

    def _watch(self, run_id: int, every: float) -> None:
        while True:
            found = runs.report(run_id)
            self.stdout.write(text.line(found.run, found.counts))
            if found.run.finished_at is not None:
                self.stdout.write(text.block(found))
                return
            time.sleep(every)

    def do_status(self, options: dict[str, Any]) -> None:
        ids = [options["run_id"]] if options["run_id"] else [r.pk for r in runs.active()]
        if not ids:
            self.stdout.write("no active runs")
        for run_id in ids:
            self.stdout.write(text.block(runs.report(run_id), verbose=options["detail"]))

    def do_list(self, options: dict[str, Any]) -> None:
        states = [options["status"].upper()] if options["status"] else None
        self.stdout.write(text.header())
        for run, counts in runs.listing(states, options["limit"]):
            self.stdout.write(text.line(run, counts))

    def do_summary(self, options: dict[str, Any]) -> None:
        self.stdout.write(text.summary(runs.summary()))

    def do_cleanup(self, options: dict[str, Any]) -> None:
        found = cleanup.find(options["days"])
        verb = "would remove" if options["dry_run"] else "removed"
        for run_id in found.runs:
            self.stdout.write(f"{verb} run {run_id} (finished over {options['days']:g} days ago)")
        for path in found.directories:
            why = " (orphaned)" if path in found.orphans else ""
            self.stdout.write(f"{verb} {path}{why}")
        if not options["dry_run"]:
            cleanup.remove(found)
        self.stdout.write(f"{len(found.runs)} run(s), {len(found.directories)} directories "
                          f"({len(found.orphans)} orphaned){' (dry run)' * options['dry_run']}")

    def _verb(self, verb: str, options: dict[str, Any]) -> None:
        if options["all"] == bool(options["run_id"]):
            raise CommandError(f"{verb}: give a run ID or --all (not both)")
        act = ACTIONS.get(verb) or _cancel
        if not options["all"]:
            run = act(options["run_id"])
            self.stdout.write(f"{verb} run {run.pk} {run.name}: {run.state}")
            return
        self._all(verb, act, options)

    def _all(self, verb: str, act: Callable[[int], Run], options: dict[str, Any]) -> None:
        targets = runs.affected(verb)
        self.stdout.write(f"{verb} --all affects {len(targets)} run(s):")
        for run in targets:
            self.stdout.write(f"  run {run.pk} {run.name} ({run.state})")
        if options["dry_run"] or not targets:
            return
        if verb == "cancel" and not options["yes"]:
            raise CommandError("cancel --all cancels every run listed above: add --yes")
        done = runs.each(verb, act)
        self.stdout.write(f"{verb}: {len(done)} run(s) now "
                          f"{', '.join(sorted({run.state for run in done})) or '-'}")

    def do_pause(self, options: dict[str, Any]) -> None:
        self._verb("pause", options)

    def do_resume(self, options: dict[str, Any]) -> None:
        self._verb("resume", options)

    def do_cancel(self, options: dict[str, Any]) -> None:
        if options["run_id"] and not options["all"] and not options["force"]:
            self._confirm(options["run_id"])
        self._verb("cancel", options)

    def _confirm(self, run_id: int) -> None:
        found = runs.report(run_id)
        running = found.counts.get("RUNNING", 0)
        left = found.total - found.done
        question = (f"Cancel run {run_id} {found.run.name}: {left} unfinished task(s), "
                    f"{running} running (asked to stop)? [y/N] ")
        if not self.stdin_isatty() or input(question).strip().lower() not in ("y", "yes"):
            raise CommandError(f"run {run_id} not cancelled (add --force to skip the question)")

    def stdin_isatty(self) -> bool:
        return sys.stdin.isatty()

