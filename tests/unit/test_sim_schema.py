"""Parameter schemas and sweep grids: typed values, ranges with units, messages that name."""

from __future__ import annotations

import pytest

from simulations import grid, registry
from simulations.exceptions import InvalidParameters
from simulations.schema import Param, ParamType, Schema, number

SCHEMA = Schema((
    Param("h", ParamType.FLOAT, "Heat-transfer coefficient", 500.0, "W/m²K", 1.0, 1e5),
    Param("n", ParamType.INT, "Grid points", 51, "", 3, 100_000),
    Param("target", ParamType.FLOAT, "Target", None, "°C", -100.0, 2000.0, optional=True),
    Param("history", ParamType.BOOL, "Keep the field", False),
    Param("method", ParamType.CHOICE, "Method", "ftcs", choices=("ftcs", "crank")),
    Param("size", ParamType.FLOAT, "Size", None, "m", 0.0, 1.0),
))


def refusal(raw: dict[str, object]) -> str:
    with pytest.raises(InvalidParameters) as caught:
        SCHEMA.clean(raw)
    return str(caught.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (100000.0, "1e5"), (5e6, "5e6"), (0.05, "0.05"), (2.5e-4, "2.5e-4"), (-3, "-3"),
     (1234.5, "1234.5"), (2592000.0, "2592000"), (1e8, "1e8"), (2.5e6, "2.5e6")],
)
def test_numbers_are_written_compactly(value, text):
    assert number(value) == text


def test_the_example_message_of_the_issue():
    assert refusal({"h": "5e6", "size": 0.5}) == "h: 5e6 is outside 1..1e5 W/m²K"
    assert refusal({"h": 5e6, "size": 0.5}) == "h: 5e6 is outside 1..1e5 W/m²K"


def test_text_and_typed_values_clean_to_the_same_values():
    from_text = SCHEMA.clean({"h": "250", "n": "1e3", "history": "yes", "size": "0.5"})
    typed = SCHEMA.clean({"h": 250, "n": 1000, "history": True, "size": 0.5})
    assert from_text == typed == {
        "h": 250.0, "n": 1000, "target": None, "history": True, "method": "ftcs", "size": 0.5,
    }
    assert isinstance(typed["h"], float)
    assert isinstance(typed["n"], int)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"n": "10.5"}, "n: expected a whole number, got '10.5'"),
        ({"n": 2}, "n: 2 is outside 3..1e5"),
        ({"h": "abc"}, "h: expected a number, got 'abc'"),
        ({"h": "nan"}, "h: expected a finite number, got 'nan'"),
        ({"h": True}, "h: expected a number, got True"),
        ({"history": "maybe"}, "history: expected yes or no (true/false), got 'maybe'"),
        ({"method": "euler"}, "method: 'euler' is not one of ftcs, crank"),
        ({"bogus": 1}, "bogus: unknown parameter (known: h, n, target, history, method, size)"),
    ],
)
def test_each_refusal_names_the_parameter(raw, message):
    assert message in refusal({"size": 0.5, **raw})


def test_a_required_parameter_and_all_errors_at_once():
    with pytest.raises(InvalidParameters) as caught:
        SCHEMA.clean({"h": 0, "n": 1})
    assert [error.name for error in caught.value.errors] == ["h", "n", "size"]
    assert "size: is required" in str(caught.value)


def test_empty_text_means_the_default():
    assert SCHEMA.clean({"h": "", "target": " ", "size": 1})["h"] == 500.0


def test_help_text_shows_unit_range_and_default():
    assert SCHEMA.get("h").describe() == "allowed: 1..1e5 W/m²K; default 500 W/m²K"
    assert SCHEMA.get("target").describe() == "allowed: -100..2000 °C; optional"


def test_slab_kind_refuses_a_target_it_can_never_reach():
    slab = registry.get("slab")
    with pytest.raises(InvalidParameters, match=r"target_temp: 20 °C is never reached"):
        slab.clean({"target_temp": 20})
    assert slab.clean({"target_temp": "400"})["target_temp"] == 400.0


def test_slab_memory_estimate_grows_honestly_with_the_history():
    slab = registry.get("slab")
    small = slab.memory_mb(slab.clean({"n": 1001, "samples": 1000}))
    big = slab.memory_mb(slab.clean({"n": 1001, "samples": 1000, "history": True}))
    assert big - small == pytest.approx(1001 * 1000 * 8 / 2**20, abs=1.5)
    huge = slab.memory_mb(slab.clean({"n": 100_000, "samples": 10_000, "history": True}))
    assert huge > 7000


def test_a_sweep_grid_is_cleaned_value_by_value_and_expanded():
    slab = registry.get("slab")
    built = grid.build(slab, {"t_end": "60"},
                       [grid.parse_axis("h=50, 200,800"), grid.parse_axis("thickness=0.05,0.1")])
    assert [(a.name, a.values) for a in built.axes] == [
        ("h", (50.0, 200.0, 800.0)), ("thickness", (0.05, 0.1))]
    assert len(built.points) == 6
    assert {(p["h"], p["thickness"]) for p in built.points} == {
        (h, t) for h in (50.0, 200.0, 800.0) for t in (0.05, 0.1)}
    assert all(p["t_end"] == 60.0 for p in built.points)


@pytest.mark.parametrize(
    ("base", "axes", "message"),
    [
        ({}, [("h", ["10", "5e6"])], "h: 5e6 is outside 1..1e5 W/m²K"),
        ({"h": 10}, [("h", ["10", "20"])], "h: given twice"),
        ({}, [("h", ["1"]), ("h", ["2"])], "h: given twice"),
        ({}, [("colour", ["red"])], "colour: unknown parameter"),
        ({}, [], "sweep: needs at least one axis"),
        ({}, [("h", [str(v) for v in range(1, 40)]), ("n", [str(v) for v in range(3, 40)])],
         "sweep: 1443 points is more than 1000"),
    ],
)
def test_bad_grids_are_refused_by_name(base, axes, message):
    with pytest.raises(InvalidParameters, match=message):
        grid.build(registry.get("slab"), base, axes)


@pytest.mark.parametrize("text", ["h", "h=", "=1,2", "h=,,"])
def test_malformed_axes(text):
    with pytest.raises(ValueError, match="expected name=value1,value2"):
        grid.parse_axis(text)


def test_axes_from_the_form_field():
    assert grid.parse_axes("h=1,2\nthickness=0.1;n=5\n") == [
        ("h", ["1", "2"]), ("thickness", ["0.1"]), ("n", ["5"])]
