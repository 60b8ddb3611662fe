"""python manage.py enqueue DOTTED.PATH [...]: put one task on the queue, print its id."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers import pausing, queue
from workers.cli import json_value, moment, positive_int, seconds, whole_number
from workers.exceptions import InvalidTaskSpec
from workers.spec import TaskSpec


class Command(BaseCommand):
    help = "Enqueue a call of a module-level function and print the new task's id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("func_path", metavar="DOTTED.PATH",
                            help="The module-level function (or @task) to call, e.g. "
                                 "bench.tasks.stamp.")
        parser.add_argument("--args", dest="task_args", type=json_value, default=[],
                            help="Positional arguments, a JSON array (default []).")
        parser.add_argument("--kwargs", dest="task_kwargs", type=json_value, default={},
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

    def handle(self, *args: Any, **options: Any) -> None:
        spec = TaskSpec(
            func_path=options["func_path"],
            args=options["task_args"],
            kwargs=options["task_kwargs"],
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
        try:
            task = queue.enqueue(spec)
        except InvalidTaskSpec as exc:
            raise CommandError(f"Refused: {exc}") from exc
        self.stdout.write(str(task.pk))
        if pausing.is_paused(task.queue):
            self.stderr.write(f"Queue {task.queue} is paused: task {task.pk} waits until "
                              f"`manage.py workers queue resume {task.queue}`.")
