"""A small checker of JSON values against the API's OpenAPI document (no dependencies).

It knows the subset of JSON Schema the document uses and refuses any other keyword, so a
schema can never claim a constraint that nothing checks.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

KNOWN = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "$ref",
    "anyOf", "format", "minimum", "maximum", "exclusiveMinimum", "maxLength", "minLength",
    "default", "minItems", "maxItems",
    "description", "pattern", "propertyNames",
})
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class Mismatch(AssertionError):
    pass


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _is_time(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


class Checker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def validate(self, value: Any, schema: dict[str, Any], where: str = "$") -> None:
        unknown = set(schema) - KNOWN
        if unknown:
            raise Mismatch(f"{where}: the checker does not know {sorted(unknown)}")
        if "$ref" in schema:
            self.validate(value, resolve(self.document, schema), where)
            return
        if "anyOf" in schema:
            self._any_of(value, schema["anyOf"], where)
        self._type(value, schema, where)
        if "enum" in schema and value not in schema["enum"]:
            raise Mismatch(f"{where}: {value!r} is not one of {schema['enum']}")
        if isinstance(value, dict):
            self._object(value, schema, where)
        elif isinstance(value, list):
            self._array(value, schema, where)
        elif isinstance(value, str):
            self._string(value, schema, where)
        elif TYPES["number"](value):
            self._number(value, schema, where)

    def _any_of(self, value: Any, options: list[dict[str, Any]], where: str) -> None:
        errors = []
        for option in options:
            try:
                self.validate(value, option, where)
            except Mismatch as exc:
                errors.append(str(exc))
            else:
                return
        raise Mismatch(f"{where}: matches none of anyOf: {errors}")

    def _type(self, value: Any, schema: dict[str, Any], where: str) -> None:
        kinds = schema.get("type")
        if kinds is None:
            return
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(TYPES[kind](value) for kind in kinds):
            raise Mismatch(f"{where}: {value!r} is not {' or '.join(kinds)}")

    def _object(self, value: dict[str, Any], schema: dict[str, Any], where: str) -> None:
        properties = schema.get("properties", {})
        missing = [name for name in schema.get("required", []) if name not in value]
        if missing:
            raise Mismatch(f"{where}: missing required {missing}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if "propertyNames" in schema:
                self.validate(name, schema["propertyNames"], f"{where} key {name!r}")
            if name in properties:
                self.validate(item, properties[name], f"{where}.{name}")
            elif extra is False:
                raise Mismatch(f"{where}: {name!r} is not documented")
            elif isinstance(extra, dict):
                self.validate(item, extra, f"{where}.{name}")

    def _array(self, value: list[Any], schema: dict[str, Any], where: str) -> None:
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            raise Mismatch(f"{where}: {len(value)} items, outside "
                           f"{schema.get('minItems', 0)}..{schema.get('maxItems', 'any')}")
        for index, item in enumerate(value):
            if "items" in schema:
                self.validate(item, schema["items"], f"{where}[{index}]")

    def _string(self, value: str, schema: dict[str, Any], where: str) -> None:
        if schema.get("format") == "date-time" and not _is_time(value):
            raise Mismatch(f"{where}: {value!r} is not an ISO 8601 time with a zone")
        if len(value) > schema.get("maxLength", len(value)):
            raise Mismatch(f"{where}: longer than {schema['maxLength']}")
        if len(value) < schema.get("minLength", 0):
            raise Mismatch(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise Mismatch(f"{where}: {value!r} does not match {schema['pattern']}")

    def _number(self, value: float, schema: dict[str, Any], where: str) -> None:
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise Mismatch(f"{where}: {value} is out of range")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise Mismatch(f"{where}: {value} is not above {schema['exclusiveMinimum']}")


def template_of(document: dict[str, Any], path: str) -> str:
    """The documented path template a concrete path falls under."""
    template: str
    for template in document["paths"]:
        pattern = re.sub(r"\{[^}]+\}", r"[0-9]+", template)
        if re.fullmatch(pattern, path):
            return template
    raise Mismatch(f"{path} is not documented")


def response_schema(document: dict[str, Any], method: str, path: str, status: int) -> Any:
    """The documented schema of one response, or a Mismatch if it is not documented."""
    operation = document["paths"][template_of(document, path)].get(method.lower())
    if operation is None:
        raise Mismatch(f"{method} {path} is not documented")
    response = operation["responses"].get(str(status))
    if response is None:
        raise Mismatch(f"{method} {path} does not document status {status}")
    return resolve(document, response)["content"]["application/json"]["schema"]
