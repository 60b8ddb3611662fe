"""Plots with matplotlib's Agg backend, imported on first use: workers that never plot, and
web processes that never open a simulation page, stay small."""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .registry import Curves, Kind
from .schema import Param

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

MAX_POINTS = 4000
MAX_CSV_BYTES = 64 * 1024 * 1024

# Plots are transparent and drawn in colours that read on the admin's light page (#fff) and
# its dark one (#121212) alike, at 3:1 or more against both: one image fits either theme.
INK = "#808080"
LINES = ("#1f77b4", "#d55e00", "#009e73", "#8d65c5", "#a66d00", "#c04f8a", "#0f8fa8", "#d62728")
THEME: dict[RcKeyType, Any] = {
    "figure.facecolor": "none",
    "axes.facecolor": "none",
    "savefig.transparent": True,
    **{key: INK for key in ("text.color", "axes.labelcolor", "axes.edgecolor", "xtick.color",
                            "ytick.color", "grid.color", "legend.edgecolor")},
    "legend.facecolor": "none",
}


class CannotPlot(Exception):
    """The data is missing or too large to plot."""


@contextlib.contextmanager
def _themed() -> Iterator[None]:
    """Draw and save inside this: the theme applies to what is made and saved in it."""
    import matplotlib
    from matplotlib.rcsetup import cycler

    matplotlib.use("Agg")
    with matplotlib.rc_context({**THEME, "axes.prop_cycle": cycler(color=LINES)}):
        yield


def _figure() -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(7.5, 4.0), layout="constrained")


def read_curves(path: Path) -> tuple[list[str], np.ndarray[Any, np.dtype[np.float64]]]:
    """The CSV's header and data, thinned to at most MAX_POINTS rows."""
    if not path.is_file():
        raise CannotPlot("no data yet")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise CannotPlot(f"{path.name} is too large to plot here; download it instead")
    with path.open() as handle:
        header = handle.readline().strip().split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    if data.shape[0] < 2 or data.shape[1] != len(header):
        raise CannotPlot("not enough data to plot")
    stride = max(1, -(-data.shape[0] // MAX_POINTS))
    return header, data[::stride]


def curves_svg(path: Path, curves: Curves, level: float | None = None) -> bytes:
    header, data = read_curves(path)
    with _themed():
        return _curves(header, data, curves, level)


def _curves(header: list[str], data: np.ndarray[Any, np.dtype[np.float64]], curves: Curves,
            level: float | None) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    for index, name in enumerate(header[1:], start=1):
        ax.plot(data[:, 0], data[:, index], label=name)
    if level is not None:
        ax.axhline(level, linestyle="--", color=INK, label=curves.level_key)
    ax.set(title=curves.title, xlabel=curves.x_label, ylabel=curves.y_label)
    ax.grid(alpha=0.3)
    ax.legend()
    return _render(fig, "svg")


def comparison_png(comparison: dict[str, Any], kind: Kind, path: Path) -> bool:
    """Draw the main metric against the first axis, one line per value of the others."""
    metric_key = comparison.get("metric")
    if not metric_key:
        return False
    with _themed():
        path.write_bytes(_comparison(comparison, kind, metric_key))
    return True


def _comparison(comparison: dict[str, Any], kind: Kind, metric_key: str) -> bytes:
    keys = [column["key"] for column in comparison["columns"]]
    axes: list[str] = comparison["axes"]
    x_index, y_index = keys.index(axes[0]), keys.index(metric_key)
    fig = _figure()
    ax = fig.add_subplot()
    others = [kind.schema.get(name) for name in axes[1:]]
    for label, rows in _series(comparison["rows"], [keys.index(p.name) for p in others], others):
        ordered = sorted(rows, key=lambda row: row[x_index])
        ax.plot([row[x_index] for row in ordered], [row[y_index] for row in ordered],
                marker="o", label=label or None)
    _label(ax, kind, axes[0], metric_key, [row[x_index] for row in comparison["rows"]])
    if len(axes) > 1:
        ax.legend()
    return _render(fig, "png")


def _series(rows: list[list[Any]], indexes: list[int],
            params: list[Param]) -> list[tuple[str, list[list[Any]]]]:
    """Rows grouped by their values of the other axes, each group labelled with them."""

    def key(row: list[Any]) -> tuple[Any, ...]:
        return tuple(row[i] for i in indexes)

    def label(values: tuple[Any, ...]) -> str:
        return ", ".join(f"{p.name}={p.show(v)}" for p, v in zip(params, values, strict=True))

    return [(label(values), list(group))
            for values, group in itertools.groupby(sorted(rows, key=key), key=key)]


def _label(ax: Axes, kind: Kind, axis: str, metric_key: str, xs: list[Any]) -> None:
    param, metric = kind.schema.get(axis), kind.metric(metric_key)
    ax.set_xlabel(f"{param.label} ({param.unit})" if param.unit else param.label)
    ax.set_ylabel(f"{metric.label} ({metric.unit})" if metric.unit else metric.label)
    ax.set_title(f"{metric.label} across the sweep")
    numbers = [x for x in xs if isinstance(x, int | float) and not isinstance(x, bool)]
    if numbers and min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)


def _render(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=110)
    return buffer.getvalue()
