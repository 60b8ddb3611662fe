"""Reading request input: a JSON (or form) body and query parameters, checked field by field.

Every refusal is a :class:`BadRequest` naming the field, so no bad input reaches the
database (where it would be a 500: out-of-range integers, NUL characters, lone surrogates).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest

from .errors import BadRequest, NotFound

MAX_ID = 2**63 - 1  # the largest primary key both databases store
MAX_INT32 = 2**31 - 1  # PositiveIntegerField on PostgreSQL
MAX_DEPTH = 32
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
IGNORED = frozenset({"csrfmiddlewaretoken"})  # sent by HTML forms, checked by the CSRF layer
TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off", ""})


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _raw_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig as exc:
        raise BadRequest("body", "is larger than the server accepts") from exc


def _form(request: HttpRequest) -> dict[str, Any]:
    try:
        return request.POST.dict()
    except (RequestDataTooBig, TooManyFieldsSent) as exc:
        raise BadRequest("body", str(exc)) from exc


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise BadRequest("body", "is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest("body", f"is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("body", "must be a JSON object")
    return data


def check_text(field: str, value: str) -> str:
    """Refuse strings no database stores: NUL characters, lone surrogates."""
    if "\x00" in value:
        raise BadRequest(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(field, "is not valid Unicode text") from exc
    return value


def check_json(field: str, value: Any) -> None:
    """Walk a parsed JSON value without recursion: bounded depth, storable text, finite numbers."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(field, f"is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            check_text(field, item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadRequest(field, "must contain only finite numbers")
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def body(request: HttpRequest) -> tuple[dict[str, Any], bool]:
    """The body as a dict, and whether its values are text (a form) rather than JSON."""
    if request.content_type in FORM_TYPES:
        return _form(request), True
    raw = _raw_body(request)
    if not raw.strip():
        return {}, False
    data = _json(raw)
    for name, value in data.items():
        check_json(check_text("body", name), value)
    return data, False


class Fields:
    """Typed access to the named inputs of one request; unknown names are refused.

    ``textual`` inputs (query parameters, form fields) are strings converted on read; JSON
    inputs must already have the right type (``"5"`` is not a number).
    """

    def __init__(self, data: Mapping[str, Any], allowed: Collection[str], *, textual: bool):
        unknown = sorted(set(data) - set(allowed) - IGNORED)
        if unknown:
            raise BadRequest(unknown[0], "is not a known field")
        self.data = data
        self.textual = textual

    def __contains__(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if self.textual and isinstance(value, str):
            value = _text_int(name, value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(name, "must be a whole number")
        if not minimum <= value <= maximum:
            raise BadRequest(name, f"must be between {minimum} and {maximum}")
        return value

    def number(self, name: str, *, minimum: float = -math.inf) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if self.textual and isinstance(value, str):
            value = _text_float(name, value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(name, "must be a number")
        if not math.isfinite(value) or value < minimum:
            raise BadRequest(name, f"must be a finite number of at least {minimum:g}")
        return float(value)

    def boolean(self, name: str) -> bool:
        value = self.data.get(name)
        if value is None:
            return False
        if self.textual and isinstance(value, str):
            return _text_bool(name, value)
        if not isinstance(value, bool):
            raise BadRequest(name, "must be true or false")
        return value

    def string(self, name: str, *, max_length: int) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise BadRequest(name, "must be a string")
        if len(value) > max_length:
            raise BadRequest(name, f"must be at most {max_length} characters")
        return check_text(name, value)

    def moment(self, name: str) -> datetime | None:
        value = self.string(name, max_length=64)
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise BadRequest(name, f"{value!r} is not an ISO 8601 time") from exc

    def ids(self, name: str) -> list[int]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise BadRequest(name, "must be a list of ids")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_ID:
                raise BadRequest(name, f"{item!r} is not a task id")
        return list(dict.fromkeys(value))


def _text_int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRequest(name, f"{value!r} is not a whole number") from None


def _text_float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise BadRequest(name, f"{value!r} is not a number") from None


def _text_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise BadRequest(name, f"{value!r} is not true or false")


def object_id(value: int, kind: str) -> int:
    """An id from the URL; ids beyond what the database stores simply do not exist."""
    if value > MAX_ID:
        raise NotFound(f"no {kind} with id {value}")
    return value
