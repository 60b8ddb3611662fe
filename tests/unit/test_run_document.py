"""Reading a run document: dependency order, cycles and unknown names named, defaults."""

from __future__ import annotations

from typing import Any

import pytest

from workers.runs import InvalidRun, parse

NOOP = "tests.testapp.tasks.noop"


def doc(*tasks: tuple[str, list[str]], **extra: Any) -> dict[str, Any]:
    return {"name": "r", **extra, "tasks": [
        {"name": name, "task": NOOP, "depends_on": after} for name, after in tasks]}


def test_tasks_come_out_in_dependency_order_document_order_among_equals():
    spec = parse(doc(("D", ["B", "C"]), ("C", ["A"]), ("B", ["A"]), ("A", []), ("E", [])))
    assert [t.name for t in spec.tasks] == ["A", "E", "C", "B", "D"]
    assert spec.failure_policy == "halt" and spec.mode == "parallel" and spec.start
    assert spec.max_parallel is None and spec.halt_running == "finish"


@pytest.mark.parametrize(("tasks", "message"), [
    ((("A", ["A"]),), "cycle: A → A"),
    ((("A", ["B"]), ("B", ["A"])), "cycle: A → B → A"),
    ((("X", []), ("A", ["C"]), ("B", ["A"]), ("C", ["B"]), ("D", ["C"])), "cycle: A → B → C → A"),
    ((("A", ["Z"]),), "tasks[0] (A).depends_on: no task named 'Z' in this run"),
])
def test_cycles_and_unknown_names_are_named(tasks, message):
    with pytest.raises(InvalidRun) as refused:
        parse(doc(*tasks))
    assert message in str(refused.value)


def test_a_repeated_predecessor_counts_once():
    spec = parse(doc(("A", []), ("B", ["A", "A"])))
    assert spec.tasks[1].depends_on == ("A",)


def test_the_web_check_runs_before_the_task_is_imported():
    seen: list[str] = []

    def refuse(path: str) -> None:
        seen.append(path)
        raise InvalidRun("func_path", "not allowed")

    with pytest.raises(InvalidRun, match=r"tasks\[0\] \(A\).task: not allowed"):
        parse({"name": "r", "tasks": [{"name": "A", "task": "no.such.module.f"}]}, check=refuse)
    assert seen == ["no.such.module.f"]


def test_the_graph_puts_each_task_one_level_below_its_deepest_predecessor():
    from workers.runs.graph import levels
    from workers.runs.reading import TaskLine

    def line(task_id: int, name: str, *after: str) -> TaskLine:
        return TaskLine(task_id, name, "WAITING", list(after), None, "", 0, "", None, None)

    rows = levels([line(1, "A"), line(2, "B", "A"), line(3, "C"), line(4, "D", "B", "C"),
                   line(5, "E", "A")])
    assert [[node.task.name for node in row] for row in rows] == [["A", "C"], ["B", "E"],
                                                                  ["D"]]
