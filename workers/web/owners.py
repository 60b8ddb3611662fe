"""What owns a task (a simulation, a sweep): found by search, linked from task pages.

The engine knows no domain app; an app that enqueues tasks for its own rows registers an
``Owner`` (``simulations`` does, in its ``AppConfig.ready``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from django.db.models import Exists, Model, OuterRef, QuerySet
from django.db.models.fields.reverse_related import ForeignObjectRel
from django.urls import NoReverseMatch, reverse

type TaskIds = QuerySet[Any, int]  # a query of task ids, used as a subquery


@dataclass(frozen=True, slots=True)
class OwnerLink:
    kind: str  # e.g. "simulation"
    label: str
    url: str


class Owner(Protocol):
    def find(self, word: str, limit: int) -> TaskIds:
        """A query of the ids of the tasks whose owner matches ``word``, at most ``limit``:
        the database reads it as a subquery (a word that matches thousands of owners never
        becomes thousands of parameters)."""
        ...

    def links(self, task_ids: Collection[int]) -> dict[int, OwnerLink]:
        """The owner of each of these tasks that has one, in one query."""
        ...


_owners: list[Owner] = []


def register(owner: Owner) -> None:
    if not any(type(known) is type(owner) for known in _owners):
        _owners.append(owner)


def find(word: str, limit: int) -> list[TaskIds]:
    """Each owner's query of matching task ids (at most ``limit`` each)."""
    return [owner.find(word, limit) for owner in _owners]


def links(task_ids: Collection[int]) -> dict[int, list[OwnerLink]]:
    found: dict[int, list[OwnerLink]] = {}
    if not task_ids:
        return found
    for owner in _owners:
        for task_id, link in owner.links(task_ids).items():
            found.setdefault(task_id, []).append(link)
    return found


def _relations_from_other_apps(model: type[Model]) -> list[tuple[type[Model], str]]:
    """Relations to ``model`` from other apps (hidden ones too)."""
    app = model._meta.app_label
    return [
        (rel.related_model, rel.field.name)
        for rel in model._meta.get_fields(include_hidden=True)
        if isinstance(rel, ForeignObjectRel) and isinstance(rel.related_model, type)
        and rel.related_model._meta.app_label != app
    ]


def not_owned[Rows: QuerySet[Any]](rows: Rows) -> Rows:
    """``rows`` but those a row of another app refers to (a simulation its task, a sweep its
    run): such rows are kept by pruning until the row that owns them is deleted."""
    for model, name in _relations_from_other_apps(rows.model):
        rows = rows.exclude(Exists(model._default_manager.filter(**{name: OuterRef("pk")})))
    return rows


def referring(obj: Model, limit: int = 5) -> list[OwnerLink]:
    """Rows of other apps that refer to ``obj`` (a sweep to its run), linked to their admin
    pages where they have one: the engine's pages name what they belong to without
    knowing any domain app."""
    found: list[OwnerLink] = []
    for model, name in _relations_from_other_apps(type(obj)):
        meta = model._meta
        for row in model._default_manager.filter(**{name: obj})[:limit]:
            try:
                url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk])
            except NoReverseMatch:
                url = ""
            found.append(OwnerLink(str(meta.verbose_name), str(row), url))
    return found
