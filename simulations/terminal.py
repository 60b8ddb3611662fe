"""What ``simulate`` prints fits an 80-column terminal: cut lines, durations, narrow tables."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from workers.web.durations import words

WIDTH = 80
GAP = "  "


def cut(text: str, width: int = WIDTH) -> str:
    """``text`` in at most ``width`` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(seconds: float) -> str:
    """``45s``, ``3m 05s``, ``2h 10m``, ``3d 4h`` (rounded to the second)."""
    return words(round(seconds), ("d", "h", "m", "s"))


def table(headings: Sequence[str], rows: Sequence[Sequence[str]],
          width: int = WIDTH) -> list[str]:
    """Columns no wider than their widest cell (headings wrap to it), in as many blocks of
    at most ``width`` characters as needed; each block repeats the first column."""
    if not headings:
        return []
    first = _column(headings[0], [row[0] for row in rows], width // 2)
    room = width - first.width - len(GAP)
    rest = [_column(heading, [row[i] for row in rows], room)
            for i, heading in enumerate(headings) if i]
    lines: list[str] = []
    for block in _blocks(rest, room):
        if lines:
            lines.append("")
        lines += _render([first, *block], len(rows))
    return lines


class _Column:
    def __init__(self, heading: list[str], cells: list[str], width: int) -> None:
        self.heading, self.cells, self.width = heading, cells, width


def _column(heading: str, cells: list[str], limit: int) -> _Column:
    longest_word = max((len(word) for word in heading.split()), default=0)
    width = min(max([len(cell) for cell in cells] + [longest_word, 1]), limit)
    cut_cells = [cut(cell, width) for cell in cells]
    return _Column(textwrap.wrap(heading, width, break_long_words=True) or [""], cut_cells,
                   width)


def _blocks(columns: list[_Column], room: int) -> list[list[_Column]]:
    blocks: list[list[_Column]] = [[]]
    used = 0
    for column in columns:
        needed = column.width + (len(GAP) if blocks[-1] else 0)
        if blocks[-1] and used + needed > room:
            blocks.append([])
            used, needed = 0, column.width
        blocks[-1].append(column)
        used += needed
    return blocks


def _render(columns: list[_Column], count: int) -> list[str]:
    depth = max(len(column.heading) for column in columns)
    lines = []
    for index in range(depth):
        lines.append(GAP.join(
            (column.heading[index] if index < len(column.heading) else "").ljust(column.width)
            for column in columns).rstrip())
    lines.append(GAP.join("-" * column.width for column in columns))
    for row in range(count):
        lines.append(GAP.join(column.cells[row].ljust(column.width)
                              for column in columns).rstrip())
    return lines
