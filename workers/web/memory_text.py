"""How a task's memory reads on its pages: its estimate and where that came from, its limit,
and what its processes use while it runs."""

from __future__ import annotations

from ..pool.estimates import Estimate

MB = 1024 * 1024
DASH = "\u2013"  # shown for a missing value


def estimate(mb: int, source: str, runs: int) -> str:
    """``312 MB (learned from 3 runs)``; a dash for a task never estimated."""
    if not mb:
        return DASH
    return f"{mb} MB ({Estimate(mb, source, runs).describe()})"


def in_use(rss_bytes: int | None, estimate_mb: int) -> str:
    """``250 MB of 312 MB (80 %)``: a running task's process tree against its estimate."""
    if rss_bytes is None:
        return ""
    used = round(rss_bytes / MB)
    if not estimate_mb:
        return f"{used} MB"
    return f"{used} MB of {estimate_mb} MB ({round(100 * used / estimate_mb)} %)"


def limit(mb: int | None) -> str:
    return f"limit {mb} MB" if mb else "no limit"
