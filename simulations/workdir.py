"""Work directories: built only from ids under WORKER_WORK_DIR; nothing outside is served.

A simulation writes into ``<work_dir>/sim/<id>``, a sweep's summary into
``<work_dir>/sweep/<id>``. Each attempt starts from an empty directory, so files of a killed
attempt are never taken for results. With ``SIMULATIONS_KEEP_WORK_DIRS`` false a directory
is deleted with its row; by default it is kept on disk for the record.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from workers import conf

from .exceptions import FileRefused

MAX_LISTED = 500


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str  # relative to the work directory, with forward slashes
    size: int
    modified: datetime


def root() -> Path:
    return Path(conf.get().work_dir)


def for_simulation(simulation_id: int) -> Path:
    return root() / "sim" / str(int(simulation_id))


def for_sweep(sweep_id: int) -> Path:
    return root() / "sweep" / str(int(sweep_id))


def fresh(directory: Path) -> Path:
    """An empty directory: whatever an earlier attempt left is removed."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def keep_work_dirs() -> bool:
    return bool(getattr(settings, "SIMULATIONS_KEEP_WORK_DIRS", True))


def discard(directory: Path) -> bool:
    """Delete a directory unless the setting keeps work directories; True if deleted."""
    if keep_work_dirs() or not directory.exists():
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True


def files(directory: Path) -> list[FileEntry]:
    """The regular files in the directory (and below), by name."""
    if not directory.is_dir():
        return []
    entries = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            name = path.relative_to(directory).as_posix()
            modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
            entries.append(FileEntry(name, stat.st_size, modified))
        if len(entries) >= MAX_LISTED:
            break
    return entries


def resolve(directory: Path, name: str) -> Path:
    """The file ``name`` inside ``directory``; FileRefused for anything else."""
    relative = PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts or "\\" in name:
        raise FileRefused(f"{name!r} is not a file name inside the work directory")
    base = directory.resolve()
    try:
        target = (base / relative).resolve()
        found = target.is_relative_to(base) and target.is_file()
    except (OSError, ValueError) as exc:  # a NUL byte, a name over 255 bytes, too many links
        raise FileRefused(f"no file {name!r} in the work directory") from exc
    if not found:
        raise FileRefused(f"no file {name!r} in the work directory")
    return target


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, allow_nan=False) + "\n")
