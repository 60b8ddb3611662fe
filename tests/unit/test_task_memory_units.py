"""The arithmetic of a task's memory: learned estimates, retries with more, the OOM signature."""

from __future__ import annotations

import signal
from pathlib import Path

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured

from workers import conf
from workers.pool import learning, memory_retry
from workers.runtime import memory

MB = 1024 * 1024


def test_too_few_runs_learn_nothing() -> None:
    assert learning.estimate_mb([(None, 100.0), (None, 120.0)], None) is None


def test_an_unscaled_estimate_is_a_high_percentile_plus_the_margin() -> None:
    samples = [(None, float(mb)) for mb in range(100, 120)]  # 20 runs: 100..119 MB
    assert learning.percentile([p for _, p in samples]) == 118.0
    assert learning.estimate_mb(samples, None) == 130  # 118 * 1.1, rounded up


def test_a_scaled_estimate_follows_the_line_through_its_runs() -> None:
    samples = [(float(s), 60.0 + s) for s in (100, 200, 300)]  # 60 MB + 1 MB per unit
    assert learning.fit(samples) == pytest.approx((60.0, 1.0))
    assert learning.estimate_mb(samples, 500.0) == 616  # 560 * 1.1
    assert learning.estimate_mb(samples, None) is None, "no unscaled runs to go by"


def test_one_scale_only_is_taken_in_proportion() -> None:
    samples = [(100.0, 150.0)] * 3
    assert learning.fit(samples) == (0.0, 1.5)
    assert learning.estimate_mb(samples, 200.0) == 330


def test_a_falling_line_is_taken_as_flat() -> None:
    samples = [(100.0, 300.0), (200.0, 250.0), (300.0, 200.0)]
    assert learning.fit(samples) == (250.0, 0.0)
    assert learning.estimate_mb(samples, 1000.0) == 330  # the highest peak, 300, plus 10 %


def test_a_retry_raises_by_the_factor_within_the_largest_budget() -> None:
    assert memory_retry.times(300, 1.5, None) == 450
    assert memory_retry.times(300, 1.5, 400) == 400
    assert memory_retry.times(500, 1.5, 400) == 500, "never lowered"
    assert memory_retry.times(0, 1.5, None) == 0


def test_the_executor_may_grow_100_mb_unless_told() -> None:
    base = conf.WorkerSettings()
    assert memory.executor_ceiling(50 * MB, base) == 150 * MB
    told = conf.WorkerSettings(executor_max_rss_mb=300)
    assert memory.executor_ceiling(50 * MB, told) == 300 * MB


def test_a_limit_is_the_tasks_own_else_the_default() -> None:
    assert memory.limit_bytes(None, conf.WorkerSettings()) is None
    assert memory.limit_bytes(None, conf.WorkerSettings(memory_limit_mb=200)) == 200 * MB
    assert memory.limit_bytes(100, conf.WorkerSettings(memory_limit_mb=200)) == 100 * MB


def test_the_oom_signature_needs_sigkill_and_a_new_oom_kill(
        monkeypatch: pytest.MonkeyPatch) -> None:
    killed = signal.SIGKILL  # a wait status of a process killed by SIGKILL is its number
    monkeypatch.setattr(memory, "oom_kills", lambda: 8)
    assert memory.killed_by_oom(killed, 7)
    assert not memory.killed_by_oom(killed, 8), "no OOM kill meanwhile"
    assert not memory.killed_by_oom(signal.SIGTERM, 7)
    assert not memory.killed_by_oom(1 << 8, 7), "an exit code is no kill"
    assert not memory.killed_by_oom(killed, None)


def test_own_rss_reads_this_process() -> None:
    if not Path("/proc/self/statm").exists():
        pytest.skip("no /proc")
    rss = memory.own_rss()
    assert rss is not None and 10 * MB < rss < 4096 * MB


@pytest.mark.parametrize(
    ("name", "raw", "field", "value"),
    [
        ("WORKER_MEMORY_LIMIT_MB", "512", "memory_limit_mb", 512),
        ("WORKER_MEMORY_RETRY_FACTOR", "2", "memory_retry_factor", 2.0),
        ("WORKER_EXECUTOR_MAX_RSS_MB", "0", "executor_max_rss_mb", 0),
    ],
)
def test_memory_settings_are_read(monkeypatch: pytest.MonkeyPatch, name: str, raw: str, field: str,
                                  value: object) -> None:
    monkeypatch.setenv(name, raw)
    assert getattr(conf.from_env(environ.Env(), Path(".")), field) == value


@pytest.mark.parametrize(("name", "raw"), [("WORKER_MEMORY_RETRY_FACTOR", "0.5"),
                                           ("WORKER_MEMORY_LIMIT_MB", "-1"),
                                           ("WORKER_EXECUTOR_MAX_RSS_MB", "lots")])
def test_bad_memory_settings_name_their_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                                 raw: str) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ImproperlyConfigured, match=name):
        conf.from_env(environ.Env(), Path("."))


@pytest.mark.skipif(not Path("/proc/vmstat").exists(), reason="Linux only: /proc/vmstat")
def test_the_oom_kill_count_is_the_kernels_read_again_each_time() -> None:
    with open("/proc/vmstat") as handle:
        kernel = next(int(line.split()[1]) for line in handle if line.startswith("oom_kill "))
    assert memory.oom_kills() == kernel
    assert memory.oom_kills() == kernel, "the kept file answers again, from its start"


def test_an_attempts_start_reads_the_oom_count_at_most_once_a_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[float] = []
    clock = [1000.0]
    monkeypatch.setattr(memory, "_last", memory._Reading())

    def read() -> int:
        reads.append(clock[0])
        return len(reads)

    monkeypatch.setattr(memory, "oom_kills", read)

    first = memory.oom_kills_lately(clock[0])
    clock[0] += 0.5
    again = memory.oom_kills_lately(clock[0])
    clock[0] += 0.5
    fresh = memory.oom_kills_lately(clock[0])

    assert (first, again, fresh) == (1, 1, 2), "kept for a second, then read anew"
    assert reads == [1000.0, 1001.0]
