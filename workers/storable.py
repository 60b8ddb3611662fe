"""The boundary between a task's data and the database: make it storable, or say why not.

A task may print NUL bytes, raise errors with lone surrogates in their message or return
strings PostgreSQL refuses. None of that may reach a database write unchanged: one such
write used to crash the worker, then every monitor that tried to record it.
"""

from __future__ import annotations

import json
import re
from typing import Any

# NUL: PostgreSQL text and jsonb refuse it. Surrogates: not encodable as UTF-8, so neither
# SQLite nor PostgreSQL can take them.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


class UnstorableResult(ValueError):
    """A task returned a value that cannot be stored as its JSON result."""


def dumps(value: Any) -> str:
    """``value`` as the JSON text to store, or an error naming why it cannot be stored.

    TypeError or ValueError from ``json`` for a value that is not JSON,
    :class:`UnstorableResult` for text the database refuses. One serialisation; the value is
    walked only when its text holds an escape that may be a NUL byte or a lone surrogate.
    """
    payload = json.dumps(value, allow_nan=False)
    if "\\u0000" in payload or "\\ud" in payload:
        where = _unstorable_path(value, "$")
        if where is not None:
            raise UnstorableResult(f"the task's result cannot be stored: {_unstorable(where)}")
    return payload


def text(value: str, limit: int | None = None) -> str:
    """``value`` with what the database refuses replaced, and a note saying so.

    With ``limit``, keep the last ``limit`` characters (a tail), note included.
    """
    cleaned, count = UNSTORABLE.subn(REPLACEMENT, value)
    if count:
        note = (
            f"\n[Crucible replaced {count} character{'s' if count != 1 else ''} the database "
            "cannot store (NUL bytes or lone surrogates) with U+FFFD]"
        )
        if limit is not None:
            cleaned = cleaned[-max(limit - len(note), 0):]
        return cleaned + note
    return cleaned if limit is None else cleaned[-limit:]


def tail(value: str, limit: int) -> str:
    """The last ``limit`` characters, storable, starting at a line boundary when one is near."""
    cut = text(value, limit)
    if len(value) > len(cut):
        newline = cut.find("\n")
        if 0 <= newline < len(cut) // 2:
            cut = cut[newline + 1:]
    return cut


def _unstorable(where: str) -> str:
    return (f"the text at {where} holds a NUL byte or a lone surrogate, which the database "
            "cannot store")


def _unstorable_path(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key!r}]"
            if isinstance(key, str) and UNSTORABLE.search(key):
                return f"{path} (a key)"
            found = _unstorable_path(item, here)
            if found is not None:
                return found
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _unstorable_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
