"""python manage.py enqueue DOTTED.PATH [...]: put one task on the queue, print its id; with
``--calls FILE``, one task per line of FILE, in one transaction."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers import queue
from workers.cli import json_value, moment, positive_int, seconds, whole_number
from workers.exceptions import InvalidTaskSpec
from workers.queue import pausing
from workers.spec import TaskSpec


class Command(BaseCommand):
    help = "Enqueue a call of a module-level function and print the new task's id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("func_path", metavar="DOTTED.PATH",
                            help="The module-level function (or @task) to call, e.g. "
                                 "bench.tasks.stamp.")
        parser.add_argument("--args", dest="task_args", type=json_value,
                            help="Positional arguments, a JSON array (default []).")
        parser.add_argument("--kwargs", dest="task_kwargs", type=json_value,
                            help="Keyword arguments, a JSON object (default {}).")
        parser.add_argument("--priority", type=whole_number, default=0,
                            help="-100..100, higher runs first (default 0).")
        parser.add_argument("--queue", default="",
                            help="Queue to put it on (default WORKER_QUEUE_NAME).")
        parser.add_argument("--max-attempts", type=positive_int, metavar="N",
                            help="Attempts before it fails (default WORKER_MAX_ATTEMPTS).")
        parser.add_argument("--timeout", type=seconds,
                            help="Seconds one attempt may run (default WORKER_TASK_TIMEOUT).")
        parser.add_argument("--memory-mb", type=positive_int, metavar="MB",
                            help="Memory it is expected to need: its node reserves this much while "
                                 "it runs (default: learned, else WORKER_MEMORY_PER_TASK_MB).")
        parser.add_argument("--run-after", type=moment, metavar="TIME",
                            help="Not before this ISO 8601 time with a time zone.")
        parser.add_argument("--cpus", type=positive_int, default=1, metavar="N",
                            help="CPUs it takes from its node's budget while it runs (default 1).")
        parser.add_argument("--memory-limit-mb", type=positive_int, metavar="MB",
                            help="Stop it if its processes grow past this "
                                 "(default WORKER_MEMORY_LIMIT_MB).")
        parser.add_argument("--force", action="store_true",
                            help="Queue it even if it needs more memory or CPUs than any "
                                 "node's whole budget.")
        parser.add_argument("--calls", metavar="FILE",
                            help="Many calls at once: a line of FILE ('-': standard input) per "
                                 "task, each a JSON array of arguments or an object with "
                                 "'args' and 'kwargs'; the other options apply to every one. "
                                 "All are queued in one transaction, or none.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["calls"] is not None:
            if options["task_args"] is not None or options["task_kwargs"] is not None:
                raise CommandError("--calls takes each call's arguments from its file: "
                                   "leave out --args and --kwargs")
            self._enqueue_many(options)
            return
        given_args, given_kwargs = options["task_args"], options["task_kwargs"]
        spec = self._spec(options, [] if given_args is None else given_args,
                          {} if given_kwargs is None else given_kwargs)
        try:
            task = queue.enqueue(spec)
        except InvalidTaskSpec as exc:
            raise CommandError(f"Refused: {exc}") from exc
        self.stdout.write(str(task.pk))
        self._note_paused(task.queue, f"task {task.pk} waits")

    def _enqueue_many(self, options: dict[str, Any]) -> None:
        calls = read_calls(options["calls"])
        template = self._spec(options, [], {})
        try:
            ids, _ = queue.enqueue_calls(template, calls)
        except InvalidTaskSpec as exc:
            raise CommandError(f"Refused, nothing queued: {exc}") from exc
        self.stdout.write(f"{len(ids)} tasks queued: ids {ids[0]}..{ids[-1]}")
        self._note_paused(queue.queue_of(template), "they wait")

    def _note_paused(self, name: str, what: str) -> None:
        if pausing.is_paused(name):
            self.stderr.write(f"Queue {name} is paused: {what} until "
                              f"`manage.py workers queue resume {name}`.")

    @staticmethod
    def _spec(options: dict[str, Any], call_args: list[Any],
              call_kwargs: dict[str, Any]) -> TaskSpec:
        return TaskSpec(
            func_path=options["func_path"],
            args=call_args,
            kwargs=call_kwargs,
            queue=options["queue"],
            priority=options["priority"],
            max_attempts=options["max_attempts"],
            timeout=options["timeout"],
            memory_mb=options["memory_mb"],
            run_after=options["run_after"],
            cpus=options["cpus"],
            memory_limit_mb=options["memory_limit_mb"],
            force=options["force"],
        )


def read_calls(path: str) -> list[tuple[list[Any], dict[str, Any]]]:
    """The calls of ``--calls``: a JSON array (arguments) or object (``args``, ``kwargs``) a
    line; blank lines are skipped. A bad line is refused naming its number."""
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"--calls: cannot read {path}: {exc}") from exc
    calls = [_call(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not calls:
        raise CommandError(f"--calls: {path} holds no calls (a JSON array or object a line)")
    return calls


def _call(number: int, line: str) -> tuple[list[Any], dict[str, Any]]:
    where = f"--calls line {number}"
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise CommandError(f"{where}: not JSON: {exc}") from exc
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict) and set(value) <= {"args", "kwargs"}:
        call_args, call_kwargs = value.get("args", []), value.get("kwargs", {})
        if isinstance(call_args, list) and isinstance(call_kwargs, dict):
            return call_args, call_kwargs
    raise CommandError(f"{where}: must be a JSON array of arguments, or an object with "
                       "'args' (an array) and 'kwargs' (an object)")
