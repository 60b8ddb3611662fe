"""python manage.py enqueue DOTTED.PATH [...]: put one task on the queue, print its id."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers import queue
from workers.cli import json_value, moment, positive_int, seconds, whole_number
from workers.exceptions import InvalidTaskSpec
from workers.spec import TaskSpec


class Command(BaseCommand):
    help = "Enqueue a call of a module-level function and print the new task's id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("func_path", metavar="DOTTED.PATH")
        parser.add_argument("--args", dest="task_args", type=json_value, default=[],
                            help="JSON array")
        parser.add_argument("--kwargs", dest="task_kwargs", type=json_value, default={},
                            help="JSON object")
        parser.add_argument("--priority", type=whole_number, default=0, help="-100..100")
        parser.add_argument("--queue", default="")
        parser.add_argument("--max-attempts", type=positive_int)
        parser.add_argument("--timeout", type=seconds, help="seconds")
        parser.add_argument("--memory-mb", type=positive_int)
        parser.add_argument("--run-after", type=moment, help="ISO 8601 with a time zone")

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
        )
        try:
            task = queue.enqueue(spec)
        except InvalidTaskSpec as exc:
            raise CommandError(f"Refused: {exc}") from exc
        self.stdout.write(str(task.pk))
