"""Reading request input: a JSON (or form) body and query parameters, checked field by field.

Every refusal is a :class:`BadRequest` naming the field, so no bad input reaches the
database (where it would be a 500: out-of-range integers, NUL characters, lone surrogates).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousMultipartForm,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, UnreadablePostError
from django.http.multipartparser import MultiPartParserError

from .errors import BadRequest, NotFound

MAX_ID = 2**63 - 1  # the largest primary key both databases store
MAX_INT32 = 2**31 - 1  # PositiveIntegerField on PostgreSQL
MAX_DEPTH = 32
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
IGNORED = frozenset({"csrfmiddlewaretoken"})  # sent by HTML forms, checked by the CSRF layer
TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off", ""})


# What Django raises while reading a request body (ours, or the CSRF check's, which reads
# form fields first): each is the client's fault, answered as a 400 naming the body.
UNREADABLE = (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
    SuspiciousMultipartForm,
    MultiPartParserError,
    UnreadablePostError,
)


def unreadable(exc: Exception) -> BadRequest:
    """The 400 for a body Django could not read (one of :data:`UNREADABLE`)."""
    if isinstance(exc, RequestDataTooBig):
        return BadRequest("body", "is larger than the server accepts")
    if isinstance(exc, UnreadablePostError):
        return BadRequest("body", "could not be read to its end")
    return BadRequest("body", f"is not a readable form: {exc}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _form(request: HttpRequest) -> dict[str, Any]:
    return request.POST.dict()


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
    raw = request.body
    if not raw:  # whitespace alone is not JSON: refused like any other invalid text
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
        value = _whole(value)
        if value is None:
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
        """An ISO 8601 time with a zone, within what a datetime holds once in UTC."""
        value = self.string(name, max_length=64)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
        except ValueError as exc:
            raise BadRequest(name, f"{value!r} is not an ISO 8601 time") from exc
        if moment.tzinfo is None:
            raise BadRequest(name, f"{value!r} has no time zone (e.g. 2026-01-01T10:00:00Z)")
        try:
            return moment.astimezone(UTC)
        except OverflowError as exc:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
            raise BadRequest(name, f"{value!r} is out of range: years 1 to 9999 in UTC") from exc

    def ids(self, name: str) -> list[int]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise BadRequest(name, "must be a list of ids")
        ids = [_whole(item) for item in value]
        for item, whole in zip(value, ids, strict=True):
            if whole is None or not 1 <= whole <= MAX_ID:
                raise BadRequest(name, f"{item!r} is not a task id")
        return list(dict.fromkeys(whole for whole in ids if whole is not None))


def _whole(value: Any) -> int | None:
    """An integer as JSON Schema counts them (``3.0`` is 3), or None; booleans are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


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
