"""Work directories of runs: each task of a run writes into a directory of its own,
``<WORKER_WORK_DIR>/runs/<run id>/tasks/<task id>-<name>/``; a run with ``merge_outputs``
gets their files copied into ``<run>/output/`` when it completes.

    from workers.runs import workdir

    def simulate(...):
        path = workdir.here()          # this task's directory, made if missing
        (path / "result.csv").write_text(...)
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from .. import conf, context
from ..models import Task

logger = logging.getLogger(__name__)

UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def root() -> Path:
    return Path(conf.get().work_dir) / "runs"


def for_run(run_id: int) -> Path:
    return root() / str(int(run_id))


def for_task(run_id: int, task_id: int, name: str) -> Path:
    """A task's directory; its id keeps two names that read alike apart."""
    slug = UNSAFE.sub("_", name).strip("._")[:60]
    return for_run(run_id) / "tasks" / f"{int(task_id)}-{slug}"


def output(run_id: int) -> Path:
    return for_run(run_id) / "output"


def here() -> Path:
    """The running task's own work directory (made if missing); only a run's task has one."""
    task_id = context.current().task_id
    run_id, name = Task.objects.filter(pk=task_id).values_list("run_id", "name").get()
    if run_id is None:
        raise RuntimeError(f"task {task_id} is not a run's task: it has no run work directory")
    path = for_task(run_id, task_id, name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def merge(run_id: int) -> list[str]:
    """Copy every task's files into the run's ``output/`` (paths kept relative to the task's
    directory). Two tasks writing the same path: the task submitted first keeps it, and the
    clash is logged. Returns the merged paths."""
    tasks = for_run(run_id) / "tasks"
    target = output(run_id)
    merged: list[str] = []
    if not tasks.is_dir():
        return merged
    for source in sorted(tasks.iterdir(), key=lambda p: int(p.name.split("-", 1)[0])):
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            relative = file.relative_to(source)
            dest = target / relative
            if dest.exists():
                logger.warning("run %s: %s written by more than one task; kept the first",
                               run_id, relative, extra={"run": run_id, "path": str(relative)})
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, dest)
            merged.append(relative.as_posix())
    return merged
