"""The side of the benchmark that runs inside the queue's Django project (Django set up).

bench/peers/run.py starts it as `python -m peerbench.driver COMMAND ... --out FILE`;
each command writes one JSON object to FILE:

  enqueue --count N        enqueue N no-op tasks, one public enqueue call each (its own
                           transaction, as a caller gets by default), and time them
  reset                    delete every task row, so phases do not see each other's
  wait-drained --count N   poll the peer's records until N tasks are finished, noting
                           when the first one was seen finished
  latency --samples M      enqueue one `stamp` task every --interval s into idle workers
                           (open loop) and time how long each takes to start

The peer comes from BENCH_PEER. The peers run in the throwaway project beside this
package (peerbench.settings, bench/.venv-peers); Crucible's two peers run in Crucible's
own project (config.settings, the project's venv, cwd the repository), with this package
on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import django

logger = logging.getLogger("peerbench.driver")

FIRST_POLL = 0.01  # s between looks for the drain's first finished task


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


class BulkPeer(Peer, Protocol):
    """A peer with a public call that enqueues many tasks at once."""

    def enqueue_noops(self, count: int) -> None: ...


def stamp_file() -> str:
    return os.environ["BENCH_STAMP_FILE"]


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

    def enqueue_noops(self, count: int) -> None:
        from peerbench.procrastinate_tasks import noop

        noop.batch_defer(*[{}] * count)

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


class HueyPeer:
    """huey (SqliteHuey through djhuey): calling a task enqueues it. huey keeps no record
    of a task that returned None, so peerbench.huey_app.tasks' completion signal appends a
    line per finished task ("ok" or "error") to BENCH_DONE_FILE."""

    def enqueue_noop(self) -> None:
        from peerbench.huey_app.tasks import noop

        noop()

    def enqueue_stamp(self, sample: int) -> None:
        from peerbench.huey_app.tasks import stamp

        stamp(sample)

    def counts(self) -> tuple[int, int]:
        from django.conf import settings

        try:
            lines = Path(settings.DONE_FILE).read_bytes().splitlines()
        except FileNotFoundError:
            return 0, 0
        return len(lines), sum(1 for line in lines if line.startswith(b"error"))

    def window(self) -> tuple[datetime | None, datetime | None]:
        return None, None  # huey records no start or finish times

    def reset(self) -> None:
        from django.conf import settings
        from huey.contrib.djhuey import HUEY

        HUEY.flush()
        Path(settings.DONE_FILE).unlink(missing_ok=True)


class Q2Peer:
    """django-q2 with its ORM broker: a queued task is an OrmQ row, deleted (acknowledged)
    only after the cluster saved its result. Successes are pruned to the last 250 (the
    default save_limit), so finished = queued when first asked - queued now."""

    def __init__(self) -> None:
        self._total: int | None = None

    def enqueue_noop(self) -> None:
        from django_q.tasks import async_task

        async_task("peerbench.q2_tasks.noop")

    def enqueue_stamp(self, sample: int) -> None:
        from django_q.tasks import async_task

        async_task("peerbench.q2_tasks.stamp", sample)

    def counts(self) -> tuple[int, int]:
        from django_q.models import Failure, OrmQ

        queued = OrmQ.objects.count()
        if self._total is None:  # the waiter asks once before the workers start
            self._total = queued
        return self._total - queued, Failure.objects.count()

    def window(self) -> tuple[datetime | None, datetime | None]:
        return None, None  # the first successes are pruned (save_limit)

    def reset(self) -> None:
        from django_q.models import OrmQ, Task

        OrmQ.objects.all().delete()
        Task.objects.all().delete()


class CrucibleTaskPeer:
    """Crucible through Django's public API: `@task` functions and `.enqueue()`."""

    def enqueue_noop(self) -> None:
        from bench.peer_tasks import noop

        noop.enqueue()

    def enqueue_noops(self, count: int) -> None:
        from bench.peer_tasks import noop
        from workers.backends import enqueue_many

        enqueue_many(noop, [((), {})] * count)

    def enqueue_stamp(self, sample: int) -> None:
        from bench.peer_tasks import stamp

        stamp.enqueue(sample, stamp_file())

    def counts(self) -> tuple[int, int]:
        from bench.core import _count

        failed = _count("FAILED")
        return _count("SUCCEEDED") + failed, failed

    def window(self) -> tuple[datetime | None, datetime | None]:
        from django.db.models import Max, Min

        from workers.models import Task

        agg = Task.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
        return agg["first"], agg["last"]

    def reset(self) -> None:
        from workers.models import Task

        Task.objects.all().delete()  # as bench/core.py's drain starts


class CruciblePlainPeer(CrucibleTaskPeer):
    """Crucible with plain functions, enqueued by dotted path as `manage.py enqueue` and
    bench/core.py do (`queue.enqueue(TaskSpec(...))`)."""

    def enqueue_noop(self) -> None:
        from workers import queue
        from workers.spec import TaskSpec

        queue.enqueue(TaskSpec(func_path="bench.tasks.noop"))

    def enqueue_noops(self, count: int) -> None:
        from workers import queue
        from workers.spec import TaskSpec

        queue.enqueue_many([TaskSpec(func_path="bench.tasks.noop")] * count)

    def enqueue_stamp(self, sample: int) -> None:
        from workers import queue
        from workers.spec import TaskSpec

        queue.enqueue(TaskSpec(func_path="bench.peer_tasks.plain_stamp",
                               args=[sample, stamp_file()]))


PEERS: dict[str, type[Peer]] = {
    "tasks_db": TasksDbPeer,
    "procrastinate": ProcrastinatePeer,
    "huey": HueyPeer,
    "q2": Q2Peer,
    "crucible_task": CrucibleTaskPeer,
    "crucible_plain": CruciblePlainPeer,
}


def load_peer() -> Peer:
    return PEERS[os.environ["BENCH_PEER"]]()


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def enqueue(peer: Peer, count: int) -> dict[str, Any]:
    """Enqueue `count` no-op tasks with the peer's public enqueue call, one after the
    other, each in its own transaction (no atomic() around them): the enqueue rate."""
    started = time.perf_counter()
    for _ in range(count):
        peer.enqueue_noop()
    seconds = time.perf_counter() - started
    return {"enqueued": count, "seconds": seconds, "rate": count / seconds}


def enqueue_bulk(peer: Peer, count: int) -> dict[str, Any]:
    """Enqueue `count` no-op tasks with the peer's one call for many, if it has one."""
    if not hasattr(peer, "enqueue_noops"):
        return {"supported": False}
    started = time.perf_counter()
    peer.enqueue_noops(count)
    seconds = time.perf_counter() - started
    return {"supported": True, "enqueued": count, "seconds": seconds, "rate": count / seconds}


def wait_drained(
    peer: Peer, count: int, timeout: float, poll: float, ready_file: Path
) -> dict[str, Any]:
    """Poll until `count` tasks are finished; report when, and the peer's own timings.

    Until the first task is seen finished it polls every FIRST_POLL s, so that the
    start-to-first-task figure has a finer resolution than the drain's end.
    """
    peer.counts()  # open the DB connection before saying we are ready
    ready_file.touch()
    deadline = time.monotonic() + timeout
    first_done_at: float | None = None
    finished, failed = peer.counts()
    while finished < count and time.monotonic() < deadline:
        time.sleep(poll if first_done_at is not None else FIRST_POLL)
        finished, failed = peer.counts()
        if finished and first_done_at is None:
            first_done_at = time.time()
    done_at = time.time()
    first, last = peer.window()
    return {
        "timed_out": finished < count,
        "done_at": done_at,
        "first_done_at": first_done_at if first_done_at is not None else done_at,
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
    interval: float  # s between enqueues, whatever the workers do (open loop)
    warmup: int
    idle: float  # s the workers sit idle between the warm-up and the samples
    sample_timeout: float
    warmup_timeout: float


def latency(peer: Peer, plan: LatencyPlan, stamp_file: Path) -> dict[str, Any]:
    """Enqueue a task every plan.interval s; latency = task start - enqueue() return.

    A warm-up (one task at a time, each awaited) makes sure every worker is up; then the
    workers idle for plan.idle s, and the samples are enqueued on a fixed schedule, so
    no enqueue waits for a worker (and none is phase-locked to a worker's poll loop).
    """
    reader = StampReader(stamp_file)
    for sample in range(plan.warmup):
        peer.enqueue_stamp(sample)
        if reader.wait_for(sample, plan.warmup_timeout) is None:
            raise RuntimeError(f"warm-up task {sample} did not start within "
                               f"{plan.warmup_timeout}s")
    time.sleep(plan.idle)
    returned: dict[int, float] = {}
    enqueue_ms: list[float] = []
    begin = time.monotonic()
    for n in range(plan.samples):
        sample = plan.warmup + n
        time.sleep(max(0.0, begin + n * plan.interval - time.monotonic()))
        called = time.time()
        peer.enqueue_stamp(sample)
        returned[sample] = time.time()
        enqueue_ms.append((returned[sample] - called) * 1000)
    latencies_ms: list[float] = []
    timeouts = 0
    for sample, at in returned.items():
        started = reader.wait_for(sample, plan.sample_timeout)
        if started is None:
            timeouts += 1
            logger.warning("sample %d did not start within %ss", sample, plan.sample_timeout)
            continue
        latencies_ms.append((started - at) * 1000)
    return {"latencies_ms": latencies_ms, "enqueue_ms": enqueue_ms, "timeouts": timeouts}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m peerbench.driver")
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enqueue")
    p.add_argument("--count", type=int, required=True)

    p = sub.add_parser("enqueue-bulk")
    p.add_argument("--count", type=int, required=True)

    sub.add_parser("reset")

    p = sub.add_parser("wait-drained")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--poll", type=float, default=0.05)
    p.add_argument("--ready-file", type=Path, required=True)

    p = sub.add_parser("latency")
    p.add_argument("--samples", type=int, required=True)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--idle", type=float, default=2.0)
    p.add_argument("--sample-timeout", type=float, default=30.0)
    p.add_argument("--warmup-timeout", type=float, default=60.0)
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    peer = load_peer()
    if args.command == "enqueue":
        return enqueue(peer, args.count)
    if args.command == "enqueue-bulk":
        return enqueue_bulk(peer, args.count)
    if args.command == "reset":
        peer.reset()
        return {"reset": True}
    if args.command == "wait-drained":
        return wait_drained(peer, args.count, args.timeout, args.poll, args.ready_file)
    plan = LatencyPlan(
        samples=args.samples,
        interval=args.interval,
        warmup=args.warmup,
        idle=args.idle,
        sample_timeout=args.sample_timeout,
        warmup_timeout=args.warmup_timeout,
    )
    return latency(peer, plan, Path(stamp_file()))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peerbench.settings")
    django.setup()
    result = run(args)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
