"""python manage.py runworker: one worker process."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from workers import conf
from workers.cli import positive_int
from workers.conf import parse_labels
from workers.exceptions import LaunchRefused
from workers.runtime.process import Launch, identify, serve
from workers.runtime.supervisor import Options


def labels(raw: str) -> dict[str, str]:
    try:
        return parse_labels(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Command(BaseCommand):
    help = "Run one worker process: claim tasks from the queue and execute them."
    # System checks import the URLconf and with it every admin module: a worker needs
    # none of that, and starts in half the time without it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--queue", action="append", dest="queues", metavar="Q",
                            help="Queue to serve (repeatable; default WORKER_QUEUE_NAME).")
        parser.add_argument("--max-tasks", type=positive_int, metavar="N",
                            help="Stop after running N tasks.")
        parser.add_argument("--batch", action="store_true",
                            help="Stop when nothing is left to claim.")
        parser.add_argument("--node", metavar="ADDRESS",
                            help="This machine's name (default WORKER_NODE_ADDRESS).")
        parser.add_argument("--labels", type=labels, metavar="k=v,...",
                            help="Node labels (default WORKER_NODE_LABELS).")
        parser.add_argument("--worker-id", type=positive_int, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        settings = conf.get()
        launch = Launch(
            options=Options(
                queues=options["queues"] or [settings.queue_name],
                max_tasks=options["max_tasks"],
                batch=options["batch"],
            ),
            node=options["node"] or settings.node_address,
            labels=options["labels"] if options["labels"] is not None else settings.node_labels,
            worker_id=options["worker_id"],
            token=settings.launch_token,
        )
        try:
            worker_id = identify(launch)
        except LaunchRefused as exc:
            raise CommandError(f"Refused to start: {exc}") from exc
        serve(launch, worker_id)
