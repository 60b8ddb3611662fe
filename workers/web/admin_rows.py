"""A change list's rows as Django's ``result_list`` writes them, with each column looked up
once per page instead of once per cell.

Per cell the admin finds the column again (a model field? an admin method?), its empty
value and CSS class, and per row it resolves the row's own link to carry the list's
filters along. For a page of 100 tasks that was most of a refresh. Here a page's columns
become one small function each, and a row is the model admin's column methods, joined.
A list this does not cover (editable, a popup, a link column that is not the primary key)
is left to Django.
"""

from __future__ import annotations

import datetime
import functools
import html
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.admin.templatetags.admin_list import ResultList, result_headers, result_list
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import display_for_field, display_for_value
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Field, Model
from django.db.models.options import Options
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.formats import date_format
from django.utils.html import conditional_escape, escape
from django.utils.safestring import SafeString
from django.utils.translation import get_language

Cell = Callable[[Model], str]


def result_context(cl: ChangeList) -> dict[str, Any]:
    """What ``change_list_results.html`` gets from ``result_list``, written faster."""
    columns = _columns(cl)
    if columns is None:
        return result_list(cl)
    headers = list(result_headers(cl))
    rows = [ResultList(None, [SafeString("".join([cell(obj) for cell in columns]))])
            for obj in cl.result_list]
    return {
        "cl": cl,
        "result_hidden_fields": [],
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
        "results": rows,
    }


def _columns(cl: ChangeList) -> list[Cell] | None:
    """A function per column, or None for a list whose columns this does not write."""
    key = cl.lookup_opts.pk.name
    if cl.formset is not None or cl.is_popup or cl.to_field or cl.list_display_links is None \
            or list(cl.list_display_links) != [key]:
        return None
    columns: list[Cell] = []
    for name in cl.list_display:
        if not isinstance(name, str):
            return None
        if name == key:
            columns.append(_link(cl, name))
        elif name == "__str__" or _is_field(cl, name):
            return None
        elif callable(method := getattr(cl.model_admin, name, None)):
            css = "action-checkbox" if name == "action_checkbox" else f"field-{name}"
            columns.append(_method(cl, method, css))
        else:
            return None
    return columns


def _is_field(cl: ChangeList, name: str) -> bool:
    try:
        cl.lookup_opts.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _method(cl: ChangeList, method: Callable[[Model], Any], css: str) -> Cell:
    """An admin method's column: its value shown as ``display_for_value`` shows it."""
    empty = getattr(method, "empty_value_display", cl.model_admin.get_empty_value_display())
    boolean = getattr(method, "boolean", False)

    def cell(obj: Model) -> str:
        value = method(obj)
        if value and not boolean:  # what display_for_value gives back, escaped as Django does
            if value.__class__ is SafeString:
                return f'<td class="{css}">{value}</td>'
            if value.__class__ is str:
                return f'<td class="{css}">{html.escape(value)}</td>'
        shown = conditional_escape(display_for_value(value, empty, boolean))
        wrap = " nowrap" if isinstance(value, datetime.date | datetime.time) else ""
        return f'<td class="{css}{wrap}">{shown}</td>'

    return cell


def _link(cl: ChangeList, name: str) -> Cell:
    """The primary key, linked to the row's page with the list's filters carried along.

    The filters' part of the link is the same for every row: it is worked out once.
    """
    field = cl.lookup_opts.get_field(name)
    assert isinstance(field, Field)  # the primary key
    empty = cl.model_admin.get_empty_value_display()
    context: dict[str, Options[Any] | str] = {"preserved_filters": cl.preserved_filters,
                                              "opts": cl.opts}
    around: list[tuple[str, str]] = []  # the link of any row: before and after its key

    def address(obj: Model) -> str:
        key = obj.pk
        if around and isinstance(key, int):
            return f"{around[0][0]}{key}{around[0][1]}"
        whole = add_preserved_filters(context, cl.url_for_result(obj))
        if isinstance(key, int) and whole.count(f"/{key}/") == 1:
            head, tail = whole.split(f"/{key}/")
            around.append((f"{head}/", f"/{tail}"))
        return whole

    plain = not settings.USE_THOUSAND_SEPARATOR  # then a whole number is shown as str() shows it

    def cell(obj: Model) -> str:
        value = getattr(obj, field.attname)
        if plain and value.__class__ is int:
            shown: Any = str(value)
        else:
            shown = display_for_field(value, field, empty, avoid_link=True)
        return (f'<th class="field-{name}"><a href="{html.escape(address(obj))}">'
                f"{conditional_escape(shown)}</a></th>")

    return cell


# --- What the task list's columns ask for again and again ---


def cell_html(template: str, *args: Any) -> SafeString:
    """``format_html(template, *args)``, escaping alike, without Django's look for lazy
    strings in every argument of every call: a page of 100 tasks makes 700 of these."""
    return SafeString(template.format(*map(_escaped, args)))


def _escaped(value: Any) -> str:
    if hasattr(value, "__html__"):
        return str(value.__html__())
    return html.escape(str(value))


def cached_url(view: str, arg: str | int) -> str:
    """``reverse(view, args=[arg])``, remembered: every refresh asks for the same few queues
    and workers. Keyed by the URL configuration and script prefix in force."""
    return _reversed(view, arg, get_urlconf(), get_script_prefix())


@functools.lru_cache(maxsize=4096)
def _reversed(view: str, arg: str | int, urlconf: str | None, prefix: str) -> str:
    return reverse(view, args=[arg], urlconf=urlconf)


def full_time(local: datetime.datetime) -> str:
    """``date_format(local, "Y-m-d H:i:s")``, without the formatter's lookups per call."""
    return (f"{local.year:04d}-{local.month:02d}-{local.day:02d} "
            f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}")


def short_time(local: datetime.datetime) -> str:
    """``date_format(local, "M j, H:i")``, escaped: each minute formatted once (per language)."""
    minute = (local.year, local.month, local.day, local.hour, local.minute)
    return _short(minute, get_language())


@functools.lru_cache(maxsize=4096)
def _short(minute: tuple[int, int, int, int, int], language: str | None) -> str:
    return escape(date_format(datetime.datetime(*minute), "M j, H:i"))
