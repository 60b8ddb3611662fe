"""The side of the benchmark that runs inside the peer project (Django set up).

bench/peers/run.py starts it as `python -m peerbench.driver COMMAND ... --out FILE`;
each command writes one JSON object to FILE:

  enqueue --count N        enqueue N no-op tasks
  reset                    delete every task row, so phases do not see each other's
  wait-drained --count N   poll the peer's result table until N tasks are finished
  latency --samples M      enqueue one `stamp` task at a time into an idle worker and
                           time how long it takes to start
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import django

logger = logging.getLogger("peerbench.driver")


class Peer(Protocol):
    """What the driver needs from a task queue."""

    def enqueue_noop(self) -> None: ...

    def enqueue_stamp(self, sample: int) -> None: ...

    def counts(self) -> tuple[int, int]:
        """(finished, failed) task counts."""
        ...

    def window(self) -> tuple[datetime | None, datetime | None]:
        """(first start, last finish) as the peer recorded them."""
        ...

    def reset(self) -> None: ...


class TasksDbPeer:
    """django-tasks-db: tasks are rows of DBTaskResult."""

    def enqueue_noop(self) -> None:
        from peerbench.tasks_db import noop

        noop.enqueue()

    def enqueue_stamp(self, sample: int) -> None:
        from peerbench.tasks_db import stamp

        stamp.enqueue(sample)

    def counts(self) -> tuple[int, int]:
        from django_tasks_db.models import DBTaskResult

        return DBTaskResult.objects.finished().count(), DBTaskResult.objects.failed().count()

    def window(self) -> tuple[datetime | None, datetime | None]:
        from django.db.models import Max, Min
        from django_tasks_db.models import DBTaskResult

        agg = DBTaskResult.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
        return agg["first"], agg["last"]

    def reset(self) -> None:
        from django_tasks_db.models import DBTaskResult

        DBTaskResult.objects.all().delete()


class ProcrastinatePeer:
    """procrastinate: tasks are rows of procrastinate_jobs, timings in procrastinate_events."""

    FINISHED = ("succeeded", "failed", "cancelled", "aborted")

    def enqueue_noop(self) -> None:
        from peerbench.procrastinate_tasks import noop

        noop.defer()

    def enqueue_stamp(self, sample: int) -> None:
        from peerbench.procrastinate_tasks import stamp

        stamp.defer(sample=sample)

    def counts(self) -> tuple[int, int]:
        from procrastinate.contrib.django.models import ProcrastinateJob

        jobs = ProcrastinateJob.objects
        return (
            jobs.filter(status__in=self.FINISHED).count(),
            jobs.filter(status="failed").count(),
        )

    def window(self) -> tuple[datetime | None, datetime | None]:
        from django.db.models import Max, Min
        from procrastinate.contrib.django.models import ProcrastinateEvent

        events = ProcrastinateEvent.objects
        first = events.filter(type="started").aggregate(at=Min("at"))["at"]
        last = events.filter(type__in=self.FINISHED).aggregate(at=Max("at"))["at"]
        return first, last

    def reset(self) -> None:
        from django.db import connection

        # The Django models are read-only by design; the schema is procrastinate's.
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE procrastinate_jobs RESTART IDENTITY CASCADE")


def load_peer() -> Peer:
    from django.conf import settings

    peers: dict[str, type[TasksDbPeer] | type[ProcrastinatePeer]] = {
        "tasks_db": TasksDbPeer,
        "procrastinate": ProcrastinatePeer,
    }
    return peers[settings.PEER]()


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def enqueue(peer: Peer, count: int) -> dict[str, Any]:
    """Enqueue `count` no-op tasks with the peer's normal enqueue call."""
    from django.db import transaction

    started = time.perf_counter()
    batch = 500  # transactions only to make setup quicker; this is not measured
    for offset in range(0, count, batch):
        with transaction.atomic():
            for _ in range(min(batch, count - offset)):
                peer.enqueue_noop()
    return {"enqueued": count, "seconds": time.perf_counter() - started}


def wait_drained(
    peer: Peer, count: int, timeout: float, poll: float, ready_file: Path
) -> dict[str, Any]:
    """Poll until `count` tasks are finished; report when, and the peer's own timings."""
    peer.counts()  # open the DB connection before saying we are ready
    ready_file.touch()
    deadline = time.monotonic() + timeout
    finished, failed = peer.counts()
    while finished < count and time.monotonic() < deadline:
        time.sleep(poll)
        finished, failed = peer.counts()
    done_at = time.time()
    first, last = peer.window()
    return {
        "timed_out": finished < count,
        "done_at": done_at,
        "finished": finished,
        "failed": failed,
        "first_started": _epoch(first),
        "last_finished": _epoch(last),
    }


@dataclass
class StampReader:
    """Reads the "<sample> <time>" lines that `stamp` tasks append to a file."""

    path: Path
    seen: dict[int, float] = field(default_factory=dict)
    _offset: int = 0
    _partial: bytes = b""

    def _read_new(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            sample, started = line.split()
            self.seen[int(sample)] = float(started)

    def wait_for(self, sample: int, timeout: float, poll: float = 0.002) -> float | None:
        deadline = time.monotonic() + timeout
        while True:
            self._read_new()
            if sample in self.seen:
                return self.seen[sample]
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)


@dataclass(frozen=True)
class LatencyPlan:
    samples: int
    warmup: int
    sample_timeout: float
    warmup_timeout: float
    pause_min: float
    pause_max: float
    phase_jitter: float
    seed: int

    def pause(self, rng: random.Random) -> float:
        """A short random pause, plus a random fraction of the peer's poll interval.

        Sampling one task at a time otherwise phase-locks the enqueues to a polling
        worker's sleep loop (which restarts when a task finishes) and biases the result.
        """
        return rng.uniform(self.pause_min, self.pause_max) + rng.uniform(0, self.phase_jitter)


def latency(peer: Peer, plan: LatencyPlan, stamp_file: Path) -> dict[str, Any]:
    """Enqueue one task at a time; latency = task start - enqueue() return."""
    rng = random.Random(plan.seed)
    reader = StampReader(stamp_file)
    latencies_ms: list[float] = []
    enqueue_ms: list[float] = []
    timeouts = 0
    max_timeouts = max(5, plan.samples // 20)
    for sample in range(plan.warmup + plan.samples):
        warming = sample < plan.warmup
        time.sleep(plan.pause(rng))
        called = time.time()
        peer.enqueue_stamp(sample)
        returned = time.time()
        timeout = plan.warmup_timeout if warming else plan.sample_timeout
        started = reader.wait_for(sample, timeout)
        if started is None:
            if warming:
                raise RuntimeError(f"warm-up task {sample} did not start within {timeout}s")
            timeouts += 1
            logger.warning("sample %d did not start within %ss", sample, timeout)
            if timeouts > max_timeouts:
                raise RuntimeError(f"{timeouts} samples timed out; giving up")
            continue
        if not warming:
            latencies_ms.append((started - returned) * 1000)
            enqueue_ms.append((returned - called) * 1000)
    return {"latencies_ms": latencies_ms, "enqueue_ms": enqueue_ms, "timeouts": timeouts}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m peerbench.driver")
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enqueue")
    p.add_argument("--count", type=int, required=True)

    sub.add_parser("reset")

    p = sub.add_parser("wait-drained")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--poll", type=float, default=0.05)
    p.add_argument("--ready-file", type=Path, required=True)

    p = sub.add_parser("latency")
    p.add_argument("--samples", type=int, required=True)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--sample-timeout", type=float, default=10.0)
    p.add_argument("--warmup-timeout", type=float, default=60.0)
    p.add_argument("--pause-min", type=float, default=0.05)
    p.add_argument("--pause-max", type=float, default=0.25)
    p.add_argument("--phase-jitter", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    peer = load_peer()
    if args.command == "enqueue":
        return enqueue(peer, args.count)
    if args.command == "reset":
        peer.reset()
        return {"reset": True}
    if args.command == "wait-drained":
        return wait_drained(peer, args.count, args.timeout, args.poll, args.ready_file)
    plan = LatencyPlan(
        samples=args.samples,
        warmup=args.warmup,
        sample_timeout=args.sample_timeout,
        warmup_timeout=args.warmup_timeout,
        pause_min=args.pause_min,
        pause_max=args.pause_max,
        phase_jitter=args.phase_jitter,
        seed=args.seed,
    )
    return latency(peer, plan, Path(settings.STAMP_FILE))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peerbench.settings")
    django.setup()
    result = run(args)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
