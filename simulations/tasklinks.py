"""Simulations and sweeps as the owners of their tasks: search by name and parameters, links."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from django.db.models import Q, QuerySet, TextField
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast
from django.urls import reverse

from workers.web.owners import OwnerLink, TaskIds

from .models import Simulation, Sweep

KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _value(text: str) -> Any:
    """``100`` and ``true`` as JSON numbers and booleans, anything else as text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def matching(word: str) -> QuerySet[Simulation]:
    """``key=value``: that parameter has that value; any other word: part of the
    simulation's name, its sweep's name or its parameters."""
    key, sep, value = word.partition("=")
    if sep and KEY.match(key) and "__" not in key:
        found = Simulation.objects.alias(param=KeyTransform(key, "parameters"))
        return found.filter(param=_value(value))
    text = Cast("parameters", TextField())
    return Simulation.objects.alias(params_text=text).filter(
        Q(name__icontains=word) | Q(sweep__name__icontains=word) | Q(params_text__icontains=word)
    )


class SimulationOwner:
    def find(self, word: str, limit: int) -> TaskIds:
        found = matching(word).filter(task__isnull=False).order_by("-id")
        return found.values_list("task_id", flat=True)[:limit]

    def links(self, task_ids: Collection[int]) -> dict[int, OwnerLink]:
        found: dict[int, OwnerLink] = {}
        rows = Simulation.objects.filter(task_id__in=list(task_ids)).only("id", "name", "kind",
                                                                           "task_id")
        for sim in rows:
            url = reverse("admin:simulations_simulation_change", args=[sim.pk])
            found[sim.task_id] = OwnerLink("simulation", str(sim), url)  # type: ignore[index]
        return found


class SweepOwner:
    """A sweep owns its summary task: found by the sweep's name, linked to the sweep."""

    def find(self, word: str, limit: int) -> TaskIds:
        found = Sweep.objects.filter(name__icontains=word, summary_task__isnull=False)
        return found.order_by("-id").values_list("summary_task_id", flat=True)[:limit]

    def links(self, task_ids: Collection[int]) -> dict[int, OwnerLink]:
        found: dict[int, OwnerLink] = {}
        sweeps = Sweep.objects.filter(summary_task_id__in=list(task_ids)).only(
            "id", "name", "kind", "summary_task_id"
        )
        for sweep in sweeps:
            url = reverse("admin:simulations_sweep_change", args=[sweep.pk])
            found[sweep.summary_task_id] = OwnerLink(  # type: ignore[index]
                "sweep summary", str(sweep), url
            )
        return found
