"""Nodes in the admin, read only: each machine's memory and CPU budget, what its running
tasks hold of it, and when the budget was last written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import Node
from ..models.node import running_sum
from ..pool.budget import megabytes

if TYPE_CHECKING:
    NodeAdminBase = admin.ModelAdmin[Node]
else:  # the admin classes are not subscriptable at run time
    NodeAdminBase = admin.ModelAdmin


@admin.register(Node)
class NodeAdmin(NodeAdminBase):
    list_display = ("name", "memory_budget", "memory_committed", "memory_free", "cpu_budget",
                    "physical", "follows_free_memory", "updated_at")
    ordering = ("name",)
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Node]:
        return super().get_queryset(request).annotate(
            committed_mb=running_sum("memory_estimate_mb"), committed_cpus=running_sum("cpus"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a worker writes its node's row when it starts

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("workers.view_worker")

    @admin.display(description="Memory budget", ordering="memory_mb")
    def memory_budget(self, node: Node) -> str:
        return megabytes(node.memory_mb)

    @admin.display(description="Held by running tasks")
    def memory_committed(self, node: Any) -> str:
        return f"{megabytes(node.committed_mb)}, {node.committed_cpus} of {node.cpus} CPUs"

    @admin.display(description="Free for estimates")
    def memory_free(self, node: Any) -> str:
        return megabytes(max(node.memory_mb - node.committed_mb, 0))

    @admin.display(description="CPUs", ordering="cpus")
    def cpu_budget(self, node: Node) -> int:
        return node.cpus

    @admin.display(description="Physical memory", ordering="total_mb")
    def physical(self, node: Node) -> str:
        return megabytes(node.total_mb)

    @admin.display(description="Follows free memory", boolean=True, ordering="measured")
    def follows_free_memory(self, node: Node) -> bool:
        return node.measured
