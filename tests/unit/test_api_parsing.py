"""Reading API input field by field: types, bounds, text no database refuses, JSON shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.http import QueryDict
from django.test import RequestFactory

from tests.integration.test_api.openapi import Checker, Mismatch
from workers.api import forms
from workers.api.errors import BadRequest, NotFound
from workers.api.parsing import MAX_ID, Fields, body, check_json, object_id
from workers.api.schema import document


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(BadRequest) as error:
        call()
    return error.value.field


def test_unknown_fields_are_refused_but_the_form_csrf_token_is_not():
    assert refused(lambda: Fields({"cuont": 1}, ("count",), textual=False)) == "cuont"
    Fields({"csrfmiddlewaretoken": "x"}, ("count",), textual=True)


def test_json_fields_must_have_their_type_but_text_fields_are_converted():
    json_fields = Fields({"n": "3", "f": "true"}, ("n", "f"), textual=False)
    text_fields = Fields({"n": "3", "f": "true"}, ("n", "f"), textual=True)

    assert refused(lambda: json_fields.integer("n", minimum=1, maximum=9)) == "n"
    assert refused(lambda: json_fields.boolean("f")) == "f"
    assert text_fields.integer("n", minimum=1, maximum=9) == 3
    assert text_fields.boolean("f") is True


@pytest.mark.parametrize("value", [True, 1.5, 10, 0, 10.0, 1e300, "3"])
def test_integers_are_whole_numbers_within_bounds(value):
    fields = Fields({"n": value}, ("n",), textual=False)

    assert refused(lambda: fields.integer("n", minimum=1, maximum=9)) == "n"


@pytest.mark.parametrize(("value", "expected"), [(None, None), (3, 3), (3.0, 3), (9.0, 9)])
def test_an_integral_float_is_an_integer_as_json_schema_says(value, expected):
    fields = Fields({"n": value}, ("n",), textual=False)

    result = fields.integer("n", minimum=1, maximum=9)

    assert result == expected
    assert result is None or type(result) is int


@pytest.mark.parametrize("raw", ["on", "1", "YES", "true"])
def test_text_booleans(raw):
    assert Fields({"f": raw}, ("f",), textual=True).boolean("f") is True


def test_ids_are_positive_storable_and_deduplicated():
    assert Fields({"ids": [3, 1, 3]}, ("ids",), textual=False).ids("ids") == [3, 1]


@pytest.mark.parametrize("bad", [[0], [MAX_ID + 1], ["1"], [True], 5])
def test_ids_refuse_what_is_not_a_task_id(bad: Any) -> None:
    fields = Fields({"ids": bad}, ("ids",), textual=False)

    assert refused(lambda: fields.ids("ids")) == "ids"


def test_json_is_walked_without_recursion_and_bounded():
    deep: list[Any] = []
    for _ in range(33):
        deep = [deep]
    assert refused(lambda: check_json("args", deep)) == "args"
    assert refused(lambda: check_json("kwargs", {"nul\x00key": 1})) == "kwargs"
    assert refused(lambda: check_json("args", [float("nan")])) == "args"
    check_json("args", [[1, "text", {"k": None}]] * 3)


def test_ids_beyond_the_database_do_not_exist():
    assert object_id(MAX_ID, "task") == MAX_ID
    with pytest.raises(NotFound):
        object_id(MAX_ID + 1, "task")


@pytest.mark.parametrize(("raw", "content_type", "expected"), [
    (b"", "application/json", ({}, False)),
    (b"", "", ({}, False)),
    (b'{"a": 1}', "text/plain", ({"a": 1}, False)),
    (b"a=1&b=x", "application/x-www-form-urlencoded", ({"a": "1", "b": "x"}, True)),
])
def test_the_body_is_json_or_a_form(raw, content_type, expected):
    request = RequestFactory().post("/", raw, content_type=content_type)

    assert body(request) == expected


@pytest.mark.parametrize("raw", [b"[]", b"null", b"{", b'{"a": NaN}', b'{"\\ud800": 1}', b"\r",
                                 b"  "])
def test_a_body_that_is_not_a_usable_json_object_is_refused(raw):
    request = RequestFactory().post("/", raw, content_type="application/json")

    assert refused(lambda: body(request)) == "body"


def test_the_task_query_reads_filters_a_cursor_and_caps_the_page_size():
    query = forms.task_query(QueryDict("state=queued,RUNNING&worker=4&after=90&page_size=999"))

    assert query == forms.TaskQuery(states=["QUEUED", "RUNNING"], worker=4, after=90,
                                    page_size=forms.MAX_PAGE_SIZE)


@pytest.mark.parametrize(("raw", "field"), [
    ("page=2", "page"),  # pages are gone: say so rather than list from the top
    ("after=0", "after"),
    (f"before={2**63}", "before"),
])
def test_the_task_query_refuses_a_bad_place(raw, field):
    assert refused(lambda: forms.task_query(QueryDict(raw))) == field


# --- the schema checker the contract tests rely on ---


def test_the_checker_catches_what_a_drifting_document_would_miss():
    doc = document()
    checker = Checker(doc)
    worker = {"$ref": "#/components/schemas/Worker"}

    with pytest.raises(Mismatch, match="missing required"):
        checker.validate({"worker_id": 1}, worker)
    with pytest.raises(Mismatch, match="not documented"):
        checker.validate({"error": "x", "detail": None, "extra": 1},
                         {"$ref": "#/components/schemas/Error"})
    with pytest.raises(Mismatch, match="is not integer"):
        checker.validate(True, {"type": "integer"})
    with pytest.raises(Mismatch, match="ISO 8601"):
        checker.validate("2030-01-01T00:00:00", {"type": "string", "format": "date-time"})
    with pytest.raises(Mismatch, match="shorter than 2"):
        checker.validate("x", {"type": "string", "minLength": 2})
    with pytest.raises(Mismatch, match="does not know"):
        checker.validate([], {"type": "array", "uniqueItems": True})
    with pytest.raises(Mismatch, match="0 items, outside 2"):
        checker.validate([], {"type": "array", "minItems": 2})
    with pytest.raises(Mismatch, match="does not match"):
        checker.validate("a\x00", {"type": "string", "pattern": "^[^\\x00]*$"})
    with pytest.raises(Mismatch, match="does not match"):
        checker.validate({"\x00": 1}, {"type": "object", "propertyNames": {"pattern": "^a$"}})
    with pytest.raises(Mismatch, match="none of anyOf"):
        checker.validate("x", {"anyOf": [{"type": "null"}, {"type": "integer"}]})
