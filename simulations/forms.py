"""The submit form, generated from a kind's schema; the schema itself does the validation,
so the form shows the same messages as the CLI and the services."""

from __future__ import annotations

from typing import Any

from django import forms

from . import grid, services
from .exceptions import InvalidParameters, ParameterError
from .registry import Kind
from .schema import Param, ParamType

RUN_FIELDS = ("name", "priority", "timeout", "sweep", "force")


def _field(param: Param) -> forms.Field:
    label = f"{param.label} ({param.unit})" if param.unit else param.label
    common: dict[str, Any] = {"label": label, "required": False, "help_text": param.describe()}
    if param.type is ParamType.BOOL:
        return forms.BooleanField(initial=bool(param.default), **common)
    if param.type is ParamType.CHOICE:
        return forms.ChoiceField(choices=[(c, c) for c in param.choices],
                                 initial=param.default, **common)
    # Text, not a number field: the schema parses it and names the parameter when refused.
    initial = "" if param.default is None else param.show(param.default).removesuffix(
        f" {param.unit}")
    return forms.CharField(initial=initial, widget=forms.TextInput(attrs={"inputmode": "decimal"}),
                           **common)


class SubmitForm(forms.Form):
    """Run options, then one field per parameter of the kind (added in ``__init__``)."""

    name = forms.CharField(max_length=200, required=False)
    priority = forms.CharField(required=False, initial="0")
    timeout = forms.CharField(required=False, label="Timeout (s)")
    sweep = forms.CharField(
        required=False, label="Sweep grid",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "h=50,200,800\nthickness=0.05,0.1"}),
        help_text="Optional: one axis per line, name=value1,value2,... "
                  "One simulation per grid point, then a comparison.",
    )
    force = forms.BooleanField(
        required=False, label="Queue even if larger than every machine",
        help_text="Without this, a simulation that needs more memory than any machine's "
                  "whole budget is refused. With it, it runs only on a machine with nothing "
                  "else running.",
    )

    def __init__(self, kind: Kind, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.axes: list[tuple[str, list[str]]] = []
        options = services.options_schema()
        for name in ("priority", "timeout"):
            self.fields[name].help_text = options.get(name).describe()
        for param in kind.schema.params:
            self.fields[param.name] = _field(param)

    def parameter_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.kind.schema.names()]

    def run_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in RUN_FIELDS]

    def clean(self) -> dict[str, Any]:
        """Check everything the services would, so that every refusal shows at once."""
        data = super().clean() or {}
        self.axes = self._axes(data.get("sweep") or "")
        try:
            services.check(self.kind.name, self._parameters(), self.axes, self.options())
        except InvalidParameters as exc:
            self.show_errors(exc)
        return data

    def _axes(self, text: str) -> list[tuple[str, list[str]]]:
        try:
            return grid.parse_axes(text)
        except ValueError as exc:
            self.add_error("sweep", str(ParameterError("sweep", str(exc))))
            return []

    def _parameters(self) -> dict[str, object]:
        """The parameters as entered, empty ones left to defaults; a swept parameter's own
        field is ignored."""
        data, swept = self.cleaned_data, {name for name, _ in self.axes}
        return {name: data[name] for name in self.kind.schema.names()
                if name not in swept and data.get(name) not in (None, "")}

    def options(self, user_id: int | None = None) -> services.Options:
        data = self.cleaned_data
        return services.Options(name=data.get("name") or "", priority=data.get("priority") or 0,
                                timeout=data.get("timeout") or None, user_id=user_id,
                                force=bool(data.get("force")))

    def submission(self) -> tuple[dict[str, object], list[tuple[str, list[str]]]]:
        """The parameters and the sweep axes of a valid form."""
        return self._parameters(), self.axes

    def show_errors(self, refused: InvalidParameters) -> None:
        """Put each refusal on the field it was typed in: a swept parameter's on the sweep
        grid; names no field has become form-wide errors."""
        swept = {name for name, _ in self.axes}
        for error in refused.errors:
            field = "sweep" if error.name in swept else error.name
            self.add_error(field if field in self.fields else None, str(error))
