"""The report of bench/peers/run.py: a markdown table with its notes, and a bar chart.

Both are built from run.py's JSON payload alone, so they can be redrawn from a saved
peers.json:

    bench/.venv-peers/bin/python bench/peers/report.py bench/results/peers.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DB_NAMES = {"sqlite": "SQLite", "pg": "PostgreSQL"}


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    """Milliseconds: one decimal below 100, whole above."""
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def commit_limit(payload: dict[str, Any], db: str) -> float | None:
    """Tasks/s the database's single-row commit rate allows Crucible."""
    rate = payload["commit_rates"].get(db, {}).get("rate")
    per_task = payload["assumptions"]["crucible_commits_per_task"]
    return None if rate is None else rate / per_task


def row_cells(payload: dict[str, Any], r: dict[str, Any]) -> list[str]:
    drain, pickup = r["drain"] or {}, r["pickup"] or {}
    cells = [r["label"]]
    if not drain:
        error = (r["error"] or "not measured").splitlines()[0]
        return [*cells, f"ERROR: {error}", "", "", "", "", "", "", "", ""]
    rate = drain["drain_rate"]
    bulk = r.get("bulk")
    cells += [
        num(drain["enqueue_rate"]["median"]),
        num(bulk["enqueue_rate"]["median"]) if bulk else "-",
        f"{num(rate['median'])} ({num(rate['min'])}-{num(rate['max'])})",
        f"{ms(pickup.get('p50_ms'))} / {ms(pickup.get('p99_ms'))}" if pickup else "-",
        ms(drain["first_done_ms"]["median"]),
    ]
    memory = pickup.get("idle_memory")
    cells.append(
        f"{num(memory['rss_mb'])} ({num(memory['pss_mb'])}), {memory['processes']}"
        if memory else "-"
    )
    cells.append(cpu_cell(drain, r["database"]))
    limit = commit_limit(payload, r["database"]) if r["crucible"] else None
    cells.append("-" if limit is None else f"{rate['median'] / limit:.1%} of {num(limit)}/s")
    loads = [run["foreign_load"]["pct_of_one_core"] for run in drain["runs"]]
    if pickup:
        loads.append(pickup["foreign_load"]["pct_of_one_core"])
    cells.append(f"{max(loads):g}%")
    return cells


def cpu_cell(drain: dict[str, Any], database: str) -> str:
    """CPU ms a task while the drain ran (median of the runs): the workers', and on
    PostgreSQL the server's beside it. "-" for a payload from before it was measured."""
    if "cpu_ms_per_task" not in drain:
        return "-"
    workers = f"{drain['cpu_ms_per_task']['median']:.2f}"
    if database != "pg":
        return workers
    return f"{workers} + {drain['db_cpu_ms_per_task']['median']:.2f}"


def render_markdown(payload: dict[str, Any]) -> str:
    opts = payload["options"]
    header = ["", "enqueue/s", "bulk enqueue/s",
              f"drain tasks/s, median (range of {opts['drain_runs']})",
              "pickup p50 / p99 ms", "start to first task done, ms",
              "idle worker RSS (PSS) MB, processes",
              "CPU ms a task while draining: workers (+ PostgreSQL server)",
              "drain / commit limit", "foreign CPU"]
    lines = [
        f"## Crucible and its peers, {payload['generated_at']}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row_cells(payload, r)) + " |" for r in payload["results"]]
    lines += ["", *notes(payload)]
    return "\n".join(lines) + "\n"


def notes(payload: dict[str, Any]) -> list[str]:
    opts, machine, versions = payload["options"], payload["machine"], payload["versions"]
    rates = payload["commit_rates"]
    per_task = payload["assumptions"]["crucible_commits_per_task"]
    out = [
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, {machine['platform']}; load average at start "
        f"{', '.join(str(x) for x in machine['load_average_at_start'])}. "
        f"Run took {payload.get('total_seconds', 0):,.0f} s.",
        "",
        "Single-row commit rate, one process (INSERT one row + COMMIT, "
        f"{opts['commit_seconds']:g} s): "
        + "; ".join(f"{DB_NAMES[db]} {num(r['rate'])}/s ({r['settings']})"
                    for db, r in rates.items()) + ".",
        f"Drain / commit limit (Crucible's rows): the median drain rate over the commit "
        f"rate / {per_task}, assuming a task needs {per_task} commits (its enqueue, and the "
        "worker's success-and-claim). The drain itself is timed after the enqueue, and two "
        "workers commit concurrently (PostgreSQL can group their commits), so a fraction "
        "above 1 is possible.",
        "",
        f"Each row: {opts['tasks']:,} no-op tasks enqueued from one process with the "
        "public enqueue call, one call per task in its own transaction (enqueue/s, median of "
        "the runs); bulk enqueue/s: the same number in one public call, for the products "
        "that have one (Crucible's `@task` `enqueue_many` and `queue.enqueue_many`, "
        "procrastinate's `batch_defer`), median of as many runs; drain counted from "
        "starting the workers until all are finished (polled "
        "every 50 ms); start to first task done from the same start (polled every 10 ms), "
        f"median of the runs; pickup from {opts['samples']} tasks enqueued "
        f"{opts['interval'] * 1000:g} ms apart (open loop) on idle workers, enqueue return "
        "to task body start; idle memory of one worker command and all its processes, summed "
        "(RSS counts shared pages in each process). 2 worker processes per row: 2 worker "
        "commands, except huey (one `run_huey -k process -w 2`) and django-q2 (one "
        "`qcluster`, workers=2). CPU ms a task: user and system CPU of every process of "
        "the row's worker commands (on PostgreSQL, + every `postgres` process's, which "
        "includes the harness's count of finished tasks every 50 ms; a lower bound), "
        "sampled every 0.1 s, from the first task's start to the last one's end where the "
        "product records them, else from the first task seen finished to the "
        "drain's end, over all the drain's tasks; median of the runs. On SQLite the "
        "database's work is inside the workers' figure. Foreign CPU: other processes' "
        "CPU, the highest of the row's phases, as % of one core (a lower bound).",
        "",
        "Settings: every row runs with its defaults, except:",
        "- Crucible: none. Logging is the default INFO (LOG_LEVEL is not set, unlike "
        "bench/core.py's WARNING) and the heartbeat is the default; the database, "
        "WORKER_LOG_DIR and WORKER_DOORBELL_DIR point into the run's own folder. Its "
        "source tree is byte-compiled first (`compileall`), as pip compiles the peers' "
        "packages when it installs them.",
    ]
    rows = [r for r in payload["results"] if not r["crucible"]]
    for r in rows:
        if r["settings"]["not_default"]:
            out.append(f"- {r['label']}: {'; '.join(r['settings']['not_default'])}.")
    if any(not r["settings"]["not_default"] for r in rows):
        out.append("- every other row: none.")
    said: set[tuple[str, str]] = set()
    for r in rows:
        name = r["label"].split(",")[0]
        for remark in r["settings"].get("remarks", []):
            if (name, remark) not in said:
                said.add((name, remark))
                out.append(f"Note on {name}: {remark}.")
    peers = ", ".join(f"{k} {v}" for k, v in versions.items() if not isinstance(v, dict))
    crucible = ", ".join(f"{k} {v}" for k, v in versions.get("crucible_venv", {}).items())
    out += ["", f"Versions (peers' venv): {peers}."]
    if crucible:
        out.append(f"Crucible (the project's venv): {crucible}.")
    errors = [r for r in payload["results"] if r["error"]]
    out += [f"ERROR in {r['label']}: {r['error']}" for r in errors]
    return out


METRICS = (  # (title, getter, log scale)
    ("enqueue/s (higher is better)",
     lambda r: r["drain"]["enqueue_rate"]["median"], False),
    ("drain tasks/s, median and range (higher is better)",
     lambda r: r["drain"]["drain_rate"]["median"], False),
    ("pickup p50 ms, log (lower is better)",
     lambda r: r["pickup"]["p50_ms"] if r["pickup"] else None, True),
    ("start to first task done, ms (lower is better)",
     lambda r: r["drain"]["first_done_ms"]["median"], False),
    ("idle worker PSS MB (lower is better)",
     lambda r: r["pickup"]["idle_memory"]["pss_mb"] if r["pickup"] else None, False),
    ("workers' CPU ms a task (lower is better)",
     lambda r: r["drain"].get("cpu_ms_per_task", {}).get("median"), False),
)  # fmt: skip


def render_chart(payload: dict[str, Any], path: Path) -> None:
    """One horizontal bar chart per measure, a bar per row; Crucible's rows in blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in payload["results"] if r["drain"]]
    labels = [r["label"] for r in rows]
    colours = ["tab:blue" if r["crucible"] else "tab:gray" for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9), constrained_layout=True)
    flat = axes.flatten()
    for ax, (title, get, log) in zip(flat, METRICS, strict=False):
        values = [get(r) or 0.0 for r in rows]
        ax.barh(labels, values, color=colours)
        if "range" in title:
            rates = [r["drain"]["drain_rate"] for r in rows]
            ax.errorbar(values, labels, fmt="none", ecolor="black", capsize=3,
                        xerr=[[v["median"] - v["min"] for v in rates],
                              [v["max"] - v["median"] for v in rates]])
        if log:
            ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    rates = payload["commit_rates"]
    fig.supxlabel("; ".join(
        [f"{payload['generated_at']}, {payload['machine']['cpus']} CPUs",
         f"{payload['options']['tasks']:,} tasks x {payload['options']['drain_runs']} drains, "
         f"{payload['options']['samples']} pickup samples",
         *(f"single-row commits/s, {DB_NAMES[db]}: {num(r['rate'])}" for db, r in rates.items()),
         "2 worker processes per row, defaults (exceptions in peers.md)"]),
        fontsize=9)  # fmt: skip
    fig.suptitle("Crucible and its peers: no-op tasks through public APIs")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    source = Path(sys.argv[1])
    payload = json.loads(source.read_text())
    (source.parent / "peers.md").write_text(render_markdown(payload))
    render_chart(payload, source.parent / "peers.png")


if __name__ == "__main__":
    main()
