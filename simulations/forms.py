"""The submit form, generated from a kind's schema; the schema itself does the validation,
so the form shows the same messages as the CLI and the services."""

from __future__ import annotations

from typing import Any

from django import forms

from . import grid
from .exceptions import InvalidParameters
from .registry import Kind
from .schema import Param, ParamType
from .services import options_schema

RUN_FIELDS = ("name", "priority", "timeout", "sweep")


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

    def __init__(self, kind: Kind, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        options = options_schema()
        for name in ("priority", "timeout"):
            self.fields[name].help_text = options.get(name).describe()
        for param in kind.schema.params:
            self.fields[param.name] = _field(param)

    def parameter_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.kind.schema.names()]

    def run_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in RUN_FIELDS]

    def submission(self) -> tuple[dict[str, object], list[tuple[str, list[str]]]]:
        """The parameters as entered (empty ones left to defaults) and the sweep axes; a
        swept parameter's own field is ignored."""
        data = self.cleaned_data
        try:
            axes = grid.parse_axes(data.get("sweep") or "")
        except ValueError as exc:
            raise InvalidParameters.one("sweep", str(exc)) from exc
        swept = {name for name, _ in axes}
        params = {name: data[name] for name in self.kind.schema.names()
                  if name not in swept and data.get(name) not in (None, "")}
        return params, axes

    def show_errors(self, refused: InvalidParameters) -> None:
        """Put each refusal on its field; unknown names become form-wide errors."""
        for error in refused.errors:
            field = error.name if error.name in self.fields else None
            self.add_error(field, str(error))
