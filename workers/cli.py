"""Argument types shared by the management commands: a bad value is named by argparse.
And the terminal kept for a command's own output."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

VERBOSE = 2  # Django's --verbosity from which log records reach the terminal


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def whole_number(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def json_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None


def moment(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an ISO 8601 time") from None


@contextmanager
def quiet_console(verbosity: int) -> Iterator[None]:
    """Below ``-v 2``, the console log handlers pass only warnings and errors, so that log
    lines do not interleave with what the command prints (a progress line, a table)."""
    if verbosity >= VERBOSE:
        yield
        return
    # Exactly StreamHandler: file handlers and pytest's capture are subclasses, left alone.
    console = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    levels = [handler.level for handler in console]
    for handler in console:
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        yield
    finally:
        for handler, level in zip(console, levels, strict=True):
            handler.setLevel(level)
