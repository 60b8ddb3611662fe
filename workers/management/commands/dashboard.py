"""python manage.py dashboard [--refresh 0.5] [--compact] [--duration S]: a live terminal view."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandParser
from rich.console import Console
from rich.live import Live

from workers.cli import seconds
from workers.runs import dashboard


class Command(BaseCommand):
    help = "A live full-screen view of workers, runs, queue depth and recent failures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--refresh", type=seconds, default=1.0, metavar="S",
                            help="Seconds between updates (default 1).")
        parser.add_argument("--compact", action="store_true",
                            help="Summary, workers and the first runs only.")
        parser.add_argument("--duration", type=seconds, default=None, metavar="S",
                            help="Stop after S seconds (default: until Ctrl-C).")

    def handle(self, *args: Any, **options: Any) -> None:
        stream: IO[str] = getattr(self.stdout, "_out", sys.stdout)  # rich ends its lines
        console = Console(file=stream, force_terminal=stream.isatty() or None)
        compact, refresh = options["compact"], options["refresh"]
        if not console.is_terminal:  # piped or captured: one frame, no screen control
            console.print(dashboard.render(dashboard.gather(), compact=compact))
            return
        ends = time.monotonic() + options["duration"] if options["duration"] else None
        with Live(console=console, screen=True, auto_refresh=False) as live:
            try:
                while ends is None or time.monotonic() < ends:
                    live.update(dashboard.render(dashboard.gather(), compact=compact),
                                refresh=True)
                    time.sleep(refresh)
            except KeyboardInterrupt:
                return
