"""``runs cleanup --days N``: old finished runs (records and work directories), and
orphaned directories (no run, or not a run's), found the way a runbook prunes stale
worktrees. Active runs are never touched, nor a run that a row of another app refers to
(a simulation sweep's run holds its points' tasks): it goes once that row is deleted."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.db import transaction

from ..models import Run
from ..models.run import FINISHED_RUN_STATES
from ..queue import clock
from ..web import owners
from . import workdir

logger = logging.getLogger(__name__)


@dataclass
class Cleanup:
    runs: list[int] = field(default_factory=list)  # finished before the cut-off
    directories: list[Path] = field(default_factory=list)  # theirs, and orphans
    orphans: list[Path] = field(default_factory=list)  # no such run, or not a run id


def find(days: float) -> Cleanup:
    """What a cleanup of runs finished more than ``days`` ago would remove."""
    cutoff = clock.now() - timedelta(days=days)
    old_runs = Run.objects.filter(state__in=FINISHED_RUN_STATES, finished_at__lt=cutoff)
    found = Cleanup(runs=list(
        owners.not_owned(old_runs).order_by("id").values_list("pk", flat=True)))
    old = set(found.runs)
    base = workdir.root()
    entries = sorted(base.iterdir()) if base.is_dir() else []
    ids = {int(p.name) for p in entries if p.name.isdigit()}
    known = set(Run.objects.filter(pk__in=ids).values_list("pk", flat=True))
    for path in entries:
        if not path.name.isdigit() or int(path.name) not in known:
            found.orphans.append(path)
        elif int(path.name) in old:
            found.directories.append(path)
    found.directories += found.orphans
    return found


def remove(found: Cleanup) -> None:
    for path in found.directories:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    with transaction.atomic():
        Run.objects.filter(pk__in=found.runs, state__in=FINISHED_RUN_STATES).delete()
    logger.info("runs cleanup: %d runs, %d directories (%d orphaned)", len(found.runs),
                len(found.directories), len(found.orphans))
