"""The live task list: its refresh, the scheduled filter, bulk actions on what a filter
matches, a page per queue, links to a task's owner and its ETA. Thin: the services are in
``tasklist``; ``TaskAdmin`` takes this mixin before ``ModelAdmin``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_http_methods

from ..exceptions import InvalidQueueName
from ..models import PausedQueue, Task
from ..panel import views as panel_views
from ..queue import pausing
from ..states import TaskState
from . import listing, owners, tasklist
from .admin_rows import cached_url, cell_html

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    class _Admin(ModelAdmin[Task]): ...
else:
    class _Admin:  # the admin class itself follows in the model admin's bases
        pass

LIST_TEMPLATE = "admin/workers/task/change_list.html"
LIVE_ROWS = "admin/workers/live_list.html#rows"  # a refreshed list's rows, alone
ROWS_TARGET = "cr-task-rows"
BULK_TEMPLATE = "admin/workers/task/bulk_confirm.html"
QUEUE_TEMPLATE = "admin/workers/task/queue.html"
PERMISSIONS = {"cancel": "workers.cancel_task", "retry": "workers.retry_task"}
DASH = "\u2013"
PLAIN = "text/plain; charset=utf-8"


def refreshing(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx and htmx.target == ROWS_TARGET)


class ChoicesOnDemand(admin.SimpleListFilter):
    """A filter whose choices cost queries: a refresh of the rows, which shows no filters,
    applies the chosen value without listing the others."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        if refreshing(request):
            value = self.value()
            return [(value, value)] if value is not None else [("", "")]
        return self.choices_listed(request, model_admin)

    def choices_listed(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        raise NotImplementedError


class StateFilter(admin.SimpleListFilter):
    """The task states, with "scheduled" (QUEUED, run_after ahead) apart from "queued"."""

    title = "state"
    parameter_name = "state__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        found = [(str(value), str(label)) for value, label in TaskState.choices]
        at = [value for value, _ in found].index(TaskState.QUEUED) + 1
        return [*found[:at], (tasklist.SCHEDULED, "Scheduled"), *found[at:]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value == tasklist.SCHEDULED:
            return tasklist.scheduled(queryset)
        if value == TaskState.QUEUED:
            return tasklist.queued_now(queryset)
        if value not in TaskState.values:
            raise IncorrectLookupParameters(f"not a task state: {value!r}")
        return queryset.filter(state=value)


def live_context(target: str) -> dict[str, Any]:
    """What a refreshed list's template needs: the rows' element, how often, and when it
    was read."""
    return {"poll_seconds": panel_views.POLL_SECONDS, "updated": timezone.localtime(),
            "live_rows_id": target}


def rows_only(request: HttpRequest, response: HttpResponse, partial: str, target: str
              ) -> HttpResponse:
    """A change list's rows alone (the template partial ``partial``, ``page.html#name``)
    when htmx asks for ``target``."""
    htmx = getattr(request, "htmx", None)
    if isinstance(response, TemplateResponse) and htmx and htmx.target == target:
        response.template_name = partial
        add_never_cache_headers(response)
    return response


def _task_id(text: str) -> int | None:
    """A task id written in ASCII digits, within what the databases store; else None."""
    if not (text.isascii() and text.isdigit()) or int(text) > listing.MAX_TASK_ID:
        return None
    return int(text)


def owner_links(links: list[owners.OwnerLink]) -> str:
    return format_html_join(" ", '<a class="cr-owner" href="{}" title="{}">{}</a>',
                            ((link.url, link.kind, link.label) for link in links))


class TaskViews(_Admin):
    change_list_template = LIST_TEMPLATE

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        mine = [
            path("bulk/<str:verb>/", view(self.bulk_view), name="workers_task_bulk"),
            # <path:...>: a queue's name may hold a slash
            path("queues/<path:name>/", view(self.queue_view), name="workers_task_queue"),
        ]
        return [*mine, *super().get_urls()]

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None
                   ) -> Task | None:
        task = super().get_object(request, object_id, from_field)
        tasklist.mark_labels([task] if task else [])
        return task

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), **self._list_context(request)}
        response = super().changelist_view(request, context)
        return rows_only(request, response, LIVE_ROWS, ROWS_TARGET)

    def _list_context(self, request: HttpRequest) -> dict[str, Any]:
        query = request.GET.urlencode()
        bulk = {verb: f"{reverse('admin:workers_task_bulk', args=[verb])}?{query}"
                for verb, perm in PERMISSIONS.items() if request.user.has_perm(perm)}
        return {"bulk_urls": bulk, **live_context(ROWS_TARGET)}

    # --- Bulk actions on everything the list's filter and search match ---

    @method_decorator(require_http_methods(["GET", "POST"]))
    def bulk_view(self, request: HttpRequest, verb: str) -> HttpResponse:
        """GET: how many tasks the action would touch; POST: do it (not past ``upto``)."""
        if verb not in PERMISSIONS:
            raise Http404(f"unknown bulk action {verb!r}: use cancel or retry")
        if not (self.has_view_permission(request) and request.user.has_perm(PERMISSIONS[verb])):
            raise PermissionDenied  # the count tells what a filter matches: viewers only
        back = f"{reverse('admin:workers_task_changelist')}?{request.GET.urlencode()}"
        try:
            cl = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return self._refuse(request, back, "The filter is not valid.")
        upto = request.POST.get("upto") if request.method == "POST" else None
        if upto is not None and _task_id(upto) is None:
            why = f"Nothing done: upto must be a task id, not {upto!r}."
            return self._refuse(request, back, why)
        try:
            bulk = tasklist.plan(verb, cl.queryset, _task_id(upto) if upto else None)
        except tasklist.BulkError as exc:
            return self._refuse(request, back, f"Nothing done: {exc}.")
        if request.method == "POST":
            return self._bulk_done(request, back, tasklist.carry_out(bulk, request.user), verb)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "bulk": bulk,
                   "title": f"{verb.capitalize()} {len(bulk.ids)} task(s)?", "back": back,
                   "filters": self._described(cl)}
        return TemplateResponse(request, BULK_TEMPLATE, context)

    def _refuse(self, request: HttpRequest, back: str, text: str) -> HttpResponse:
        self.message_user(request, text, messages.ERROR)
        return HttpResponseRedirect(back)

    def _bulk_done(self, request: HttpRequest, back: str, outcome: tasklist.BulkOutcome,
                   verb: str) -> HttpResponse:
        done = {"cancel": "Cancelled", "retry": "Retrying"}[verb]
        level = messages.SUCCESS if outcome.done else messages.WARNING
        self.message_user(request, f"{done} {outcome.done} task(s).", level)
        for refusal in outcome.refused[:10]:
            self.message_user(request, refusal, messages.ERROR)
        return HttpResponseRedirect(back)

    def _described(self, cl: Any) -> list[str]:
        found = [f"{spec.title}: {choice['display']}" for spec in cl.filter_specs
                 for choice in spec.choices(cl) if choice.get("selected") and
                 choice.get("display") != "All"]
        if cl.query:
            found.append(f"search: {cl.query}")
        return found or ["no filter: every task"]

    # --- A queue's page ---

    def queue_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            pausing.check_name(name)
        except InvalidQueueName as exc:
            return HttpResponseBadRequest(f"No such queue: {exc}.", content_type=PLAIN)
        summary = tasklist.queue_summary(name)
        now = timezone.now()
        tasks = reverse("admin:workers_task_changelist")
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "summary": summary,
            "title": f"Queue {name}",
            "running": [(task, tasklist.task_eta(task, now)) for task in summary.running_tasks],
            "links": {state: f"{tasks}?{urlencode({'queue': name, 'state__exact': state})}"
                      for state in [*TaskState.values, tasklist.SCHEDULED]},
            "all_url": f"{tasks}?{urlencode({'queue': name})}",
            "poll_seconds": panel_views.POLL_SECONDS,
            "paused": PausedQueue.objects.filter(name=name).first(),
        }
        response = TemplateResponse(request, QUEUE_TEMPLATE, context)
        if getattr(request, "htmx", None):
            response.template_name = f"{QUEUE_TEMPLATE}#queue-body"
            add_never_cache_headers(response)
        return response

    # --- Columns (a page has 100 rows of them: cell_html and cached_url, see admin_rows) ---

    @admin.display(description="Task", ordering="id")
    def task_cell(self, obj: Task) -> str:
        links = getattr(obj, "owner_links", [])
        short = obj.func_path.rsplit(".", 2)
        return cell_html(
            '<span class="cr-func" title="{}">{}</span>{}', obj.func_path,
            ".".join(short[-2:]), cell_html(" {}", owner_links(links)) if links else "",
        )

    @admin.display(description="Queue")
    def queue_cell(self, obj: Task) -> str:
        if not obj.queue:
            return DASH
        url = cached_url("admin:workers_task_queue", obj.queue)
        priority = cell_html(' <span class="cr-quiet" title="Priority">p{}</span>',
                             obj.priority) if obj.priority else ""
        return cell_html('<a href="{}">{}</a>{}', url, obj.queue, priority)

    @admin.display(description="Worker", ordering="worker")
    def worker_number(self, obj: Task) -> str:
        """The column says "worker": the number alone keeps the list narrow."""
        if obj.worker_id is None:
            return DASH
        url = cached_url("admin:workers_worker_change", obj.worker_id)
        return cell_html('<a href="{}" title="worker {}">{}</a>', url, obj.worker_id,
                         obj.worker_id)

    @admin.display(description="Owner")
    def owner(self, obj: Task) -> str:
        links = owners.links([obj.pk]).get(obj.pk, [])
        return owner_links(links) if links else DASH

    @admin.display(description="ETA")
    def eta(self, obj: Task) -> str:
        """Also tells the page's script the task's state and how often to look again."""
        return format_html(
            '<span class="cr-task-live" data-state="{}" data-poll-seconds="{}">{}</span>',
            tasklist.shown_state(obj), panel_views.POLL_SECONDS,
            tasklist.task_eta(obj, timezone.now()) or DASH,
        )
