"""The admin of workers and tasks: rows are read-only, every change goes through the services."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

from . import queue
from .exceptions import CrucibleError, InvalidQueueName
from .models import Task, TaskAttempt, Worker
from .panel.cards import duration
from .pool import launcher
from .queue import pausing
from .spec import TaskSpec
from .states import ACTIVE_WORKER_STATES, FINISHED_TASK_STATES, TaskState, WorkerState
from .web import admin_rows, audit, listing, memory_text, owners, tasklist
from .web.admin_logs import TaskLogs, WorkerLogs, attempt_links
from .web.admin_rows import cell_html
from .web.admin_tasks import ChoicesOnDemand, StateFilter, TaskViews

DASH = "\u2013"  # shown for a missing value
if TYPE_CHECKING:
    WorkerAdminBase = admin.ModelAdmin[Worker]
    TaskAdminBase = admin.ModelAdmin[Task]
    AttemptInlineBase = admin.TabularInline[TaskAttempt, Task]
else:  # the admin classes are not subscriptable at run time
    WorkerAdminBase = TaskAdminBase = admin.ModelAdmin
    AttemptInlineBase = admin.TabularInline

BOTH = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]
ERROR_SUMMARY_CHARS = 120


class ReadOnlyMixin:
    """No add, change or delete through forms: operators act through the services."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def badge(state: str) -> SafeString:
    return cell_html('<span class="cr-badge cr-badge--{}">{}</span>', state.lower(), state)


def size(value: int | None) -> str:
    return DASH if value is None else str(filesizeformat(value))


def moment(value: datetime | None) -> str:
    """A compact local date and time for list columns; the full one on hover."""
    if value is None:
        return DASH
    local = localtime(value)
    return SafeString(  # digits and separators, and an escaped month: a page has 200 of these
        f'<time class="cr-nowrap" datetime="{local.isoformat()}" '
        f'title="{admin_rows.full_time(local)}">{admin_rows.short_time(local)}</time>'
    )


def since(value: datetime | None) -> str:
    """A local, readable time and how long ago it was (by this server's clock)."""
    if value is None:
        return "never"
    local = localtime(value)
    ago = duration((timezone.now() - value).total_seconds())
    return format_html(
        '<time class="cr-nowrap" datetime="{}">{}</time> ({} ago)',
        local.isoformat(),
        date_format(local, "Y-m-d H:i:s"),
        ago,
    )


def exit_text(code: int | None) -> str:
    """A process's exit as recorded: a code, a signal (negative), or unknown."""
    if code is None:
        return DASH
    if code < 0:
        try:
            name = f" ({signal.Signals(-code).name})"
        except ValueError:
            name = ""
        return f"killed by signal {-code}{name}"
    return f"exit code {code}"


def worker_link(worker_id: int | None) -> str:
    if worker_id is None:
        return DASH
    url = reverse("admin:workers_worker_change", args=[worker_id])
    return format_html('<a class="cr-nowrap" href="{}">worker {}</a>', url, worker_id)


def task_link(task_id: int | None) -> str:
    if task_id is None:
        return DASH
    url = reverse("admin:workers_task_change", args=[task_id])
    return format_html('<a href="{}">task {}</a>', url, task_id)


def _none(_: object) -> None:
    return None


def pre(text: str) -> str:
    return format_html('<pre class="cr-pre">{}</pre>', text) if text else DASH


def apply(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    rows: QuerySet[Any],
    verb: str,
    service: Callable[[Any], str | None],
) -> int:
    """Call a service for each row and log it (with the detail it returns); report refusals."""
    done = 0
    for row in rows:
        try:
            detail = service(row)
        except CrucibleError as exc:
            modeladmin.message_user(request, f"{row}: {exc}", messages.ERROR)
            continue
        audit.record(request.user, row, verb, detail=detail or "")
        done += 1
    return done


def report(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, done: int, did: str,
           nothing: str) -> None:
    """A success only when something was done; nothing done is a warning that says so."""
    if done:
        modeladmin.message_user(request, did, messages.SUCCESS)
    else:
        modeladmin.message_user(request, nothing, messages.WARNING)


# --- Workers ---


@admin.register(Worker)
class WorkerAdmin(ReadOnlyMixin, WorkerLogs, WorkerAdminBase):
    list_display = (
        "id",
        "state_badge",
        "node",
        "pid",
        "memory",
        "cpu",
        "heartbeat",
        "running_task",
        "tasks_succeeded",
        "tasks_failed",
        "started_at",
        "stopped_at",
    )
    list_display_links = ("id",)
    list_filter = ("state", "node", "spawned")
    search_fields = ("=id", "node", "=pid")
    actions = ("drain_workers", "abort_workers")
    fieldsets = (
        (None, {"fields": (("state_badge", "node", "pid", "spawned"), ("queues", "labels"))}),
        (
            "Resources",
            {
                "fields": (
                    ("memory", "task_memory", "cpu"),
                    ("heartbeat", "running_task"),
                    ("tasks_succeeded", "tasks_failed", "task_history"),
                )
            },
        ),
        (
            "Times",
            {
                "fields": (
                    ("created_at", "started_at"),
                    ("drain_requested_at", "abort_requested_at"),
                ),
                "classes": ("collapse",),
            },
        ),
    )
    readonly_fields = (
        "state_badge",
        "memory",
        "cpu",
        "task_memory",
        "heartbeat",
        "running_task",
        "task_history",
        "exit_status",
        "stop_reason",
        "failure",
    )

    class Media:
        css = {"all": ("crucible/crucible.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        running = Task.objects.running().filter(worker=OuterRef("pk"), held=False).values("pk")[:1]
        return super().get_queryset(request).annotate(running_task_id=Subquery(running))

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.manage_workers")

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: Worker) -> SafeString:
        return badge(obj.state)

    @admin.display(description="Memory", ordering="rss_bytes")
    def memory(self, obj: Worker) -> str:
        return size(obj.rss_bytes)

    @admin.display(description="Task memory")
    def task_memory(self, obj: Worker) -> str:
        return size(obj.task_rss_bytes)

    @admin.display(description="CPU", ordering="cpu_percent")
    def cpu(self, obj: Worker) -> str:
        return DASH if obj.cpu_percent is None else f"{obj.cpu_percent:.0f} %"

    @admin.display(description="Last heartbeat", ordering="last_heartbeat")
    def heartbeat(self, obj: Worker) -> str:
        return since(obj.last_heartbeat)

    @admin.display(description="Running task")
    def running_task(self, obj: Worker) -> str:
        return task_link(getattr(obj, "running_task_id", None))

    @admin.display(description="Its tasks")
    def task_history(self, obj: Worker) -> str:
        url = f"{reverse('admin:workers_task_changelist')}?worker__id__exact={obj.pk}"
        return format_html('<a href="{}">every task it ran</a>', url)

    def get_fieldsets(self, request: HttpRequest, obj: Worker | None = None) -> Any:
        """An ended worker's end: a failure is called one, a drain or an abort is not."""
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and not obj.is_active:
            reason = "failure" if obj.state == WorkerState.FAILED else "stop_reason"
            fieldsets.insert(2, ("End", {"fields": (("exit_status", "stopped_at"), reason)}))
        return fieldsets

    @admin.display(description="Exit")
    def exit_status(self, obj: Worker) -> str:
        return exit_text(obj.exit_code)

    @admin.display(description="Stop reason")
    def stop_reason(self, obj: Worker) -> str:
        return obj.failure_reason or DASH

    @admin.display(description="Failure reason")
    def failure(self, obj: Worker) -> str:
        return obj.failure_reason or DASH

    @admin.action(
        permissions=["manage"], description="Drain: finish the task, then stop", location=BOTH
    )
    def drain_workers(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        active = queryset.filter(state__in=ACTIVE_WORKER_STATES)
        done = apply(self, request, active, "drain", lambda w: _none(launcher.drain(w.pk)))
        report(self, request, done, f"Draining {done} worker(s).",
               "No worker was drained: none of those selected is active.")

    @admin.action(
        permissions=["manage"], description="Abort: stop now, requeue the task", location=BOTH
    )
    def abort_workers(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        active = queryset.filter(state__in=ACTIVE_WORKER_STATES)
        done = apply(self, request, active, "abort", lambda w: _none(launcher.abort(w.pk)))
        self.message_user(request, f"Aborting {done} worker(s).", messages.WARNING)


# --- Tasks ---


class QueueFilter(ChoicesOnDemand):
    title = "queue"
    parameter_name = "queue"

    def choices_listed(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in listing.task_queues()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        try:
            return listing.with_queue(queryset, pausing.check_name(value))
        except InvalidQueueName as exc:
            raise IncorrectLookupParameters(str(exc)) from exc


class PriorityFilter(ChoicesOnDemand):
    title = "priority"
    parameter_name = "priority"

    def choices_listed(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(value), str(value)) for value in listing.task_priorities()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = _integer(self.value())
        return queryset if value is None else listing.with_priority(queryset, value)


class WorkerFilter(ChoicesOnDemand):
    """The most recent workers; any other one by its id in the address."""

    title = "worker"
    parameter_name = "worker__id__exact"

    def choices_listed(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(w.pk), f"worker {w.pk} ({w.node})") for w in listing.recent_workers()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = _integer(self.value())
        return queryset if value is None else queryset.filter(worker_id=value)


def _integer(value: str | None) -> int | None:
    """A filter's value as a number; a malformed one is the admin's "incorrect lookup"."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise IncorrectLookupParameters(f"not a number: {value!r}") from None


# What the list's columns read (the call's arguments, result and error are left behind).
LIST_FIELDS = ("id", "func_path", "queue", "priority", "state", "max_attempts", "attempt",
               "attempt_base", "run_after", "created_at", "last_attempted_at", "finished_at",
               "worker", "progress", "progress_message")


class TaskChangeList(ChangeList):
    """A filtered or searched list that few tasks match is read by their ids."""

    def get_queryset(
        self, request: HttpRequest, exclude_parameters: list[str | None] | None = None
    ) -> QuerySet[Any]:
        rows = super().get_queryset(request, exclude_parameters)
        return listing.pinned(rows) if rows.query.has_filters() else rows

    def get_results(self, request: HttpRequest) -> None:
        """Each row learns its owner (a simulation...) and whether it is scheduled, from
        two statements for the page; the rows are read without the columns no list shows."""
        super().get_results(request)
        if isinstance(self.result_list, QuerySet):
            self.result_list = self.result_list.only(*LIST_FIELDS)
        found = owners.links([task.pk for task in self.result_list])
        for task in self.result_list:
            task.owner_links = found.get(task.pk, [])
        tasklist.mark_labels(self.result_list)

    def result_context(self) -> dict[str, Any]:
        """The rows for ``{% live_result_list %}``: see ``admin_rows``."""
        return admin_rows.result_context(self)


class TaskAttemptInline(ReadOnlyMixin, AttemptInlineBase):
    model = TaskAttempt
    verbose_name_plural = "Attempts"
    extra = 0
    can_delete = False
    show_change_link = False
    fields = (
        "number",
        "worker_cell",
        "started_at",
        "finished_at",
        "took",
        "outcome_badge",
        "error_summary",
        "peak_memory",
        "details",
        "log_links",
    )
    readonly_fields = fields

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("workers.view_task")

    @admin.display(description="Worker")
    def worker_cell(self, obj: TaskAttempt) -> str:
        return worker_link(obj.worker_id) if obj.worker_id else obj.worker_label or DASH

    @admin.display(description="Took")
    def took(self, obj: TaskAttempt) -> str:
        if obj.started_at is None:
            return DASH
        return duration((obj.finished_at - obj.started_at).total_seconds())

    @admin.display(description="Outcome")
    def outcome_badge(self, obj: TaskAttempt) -> SafeString:
        css = "succeeded" if obj.outcome == "SUCCEEDED" else "failed"
        return format_html(
            '<span class="cr-badge cr-badge--{}">{}</span>', css, obj.get_outcome_display()
        )

    @admin.display(description="Error")
    def error_summary(self, obj: TaskAttempt) -> str:
        text = obj.error.strip().splitlines()[-1] if obj.error.strip() else ""
        return text[:ERROR_SUMMARY_CHARS] or DASH

    @admin.display(description="Peak memory")
    def peak_memory(self, obj: TaskAttempt) -> str:
        if obj.memory_limit_mb is None:
            return size(obj.peak_rss_bytes)
        return f"{size(obj.peak_rss_bytes)} ({memory_text.limit(obj.memory_limit_mb)})"

    @admin.display(description="Traceback and log")
    def details(self, obj: TaskAttempt) -> str:
        text = "\n\n".join(part for part in (obj.traceback, obj.log_tail) if part)
        if not text:
            return DASH
        return format_html(
            '<details><summary>show</summary><pre class="cr-pre">{}</pre></details>', text
        )

    @admin.display(description="Log")
    def log_links(self, obj: TaskAttempt) -> str:
        return attempt_links(obj.task_id, obj.number)


@admin.register(Task)
class TaskAdmin(ReadOnlyMixin, TaskLogs, TaskViews, TaskAdminBase):
    # Narrow enough for 1366 px beside the navigation; state first for a phone.
    list_display = (
        "id",
        "state_cell",
        "task_cell",
        "queue_cell",
        "progress_bar",
        "worker_number",
        "times",
    )
    # Millions of rows: filters, counts, search and sorting that an index answers.
    list_filter = (StateFilter, QueueFilter, PriorityFilter, WorkerFilter)
    search_fields = ("func_path", "=id")
    search_help_text = (
        "Words a task must all match: its id, part of its function path, part of its "
        "simulation's name or parameters, or one parameter's value as name=value (h=100)."
    )
    sortable_by = ("id",)
    paginator = listing.BoundedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ("retry_tasks", "cancel_tasks", "duplicate_tasks")
    inlines = (TaskAttemptInline,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("state_badge", "queue", "priority", "worker_cell"),
                    ("func_path", "owner"),
                    ("progress_bar", "progress_message", "eta"),
                    ("attempts", "elapsed", "peak_memory"),
                    ("memory",),
                )
            },
        ),
        ("Call", {"fields": (("args", "kwargs"), "result_text")}),
        (
            "Limits and schedule",
            {
                "fields": (
                    ("timeout", "memory_mb", "max_attempts"),
                    ("retry_backoff", "run_after", "pending_dependencies"),
                ),
                "classes": ("collapse",),
            },
        ),
        (
            "Times",
            {
                "fields": (
                    ("created_at", "started_at", "last_attempted_at"),
                    ("finished_at", "lease_expires_at", "cancel_requested_at"),
                ),
                "classes": ("collapse",),
            },
        ),
    )
    failure_fieldset: Any = (
        "Failure",
        {"fields": ("error_text", ("crash_count", "quarantined_at"))},
    )
    readonly_fields = (
        "state_badge",
        "worker_cell",
        "progress_bar",
        "attempts",
        "elapsed",
        "result_text",
        "error_text",
        "peak_memory",
        "memory",
        "owner",
        "eta",
    )

    class Media:
        css = {"all": ("crucible/crucible.css", "crucible/tasks.css")}
        js = ("crucible/tasks.js",)

    def get_fieldsets(self, request: HttpRequest, obj: Task | None = None) -> Any:
        """The failure section only for a task that has failed or crashed."""
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and (obj.error or obj.crash_count or obj.quarantined_at):
            fieldsets.insert(1, self.failure_fieldset)
        return fieldsets

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.retry_task")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.cancel_task")

    def has_submit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.submit_task")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Task], search_term: str
    ) -> tuple[QuerySet[Task], bool]:
        return listing.search(queryset, search_term), False

    def action_checkbox(self, obj: Task) -> SafeString:
        """Django's checkbox, without rendering a widget template per row (a quarter of
        the list's time)."""
        return cell_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" '
            'aria-label="Select this object for an action - {}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            obj,
        )

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: Task) -> SafeString:
        shown = tasklist.shown_state(obj)
        if shown == obj.state:
            return badge(shown)
        if shown == tasklist.PAUSED:
            return cell_html('<span title="Queued; queue {} is paused: it runs once the queue '
                             'is resumed">{}</span>', obj.queue, badge(shown))
        return cell_html('<span title="Runs after {}">{}</span>',
                           date_format(localtime(obj.run_after), "Y-m-d H:i:s"), badge(shown))

    @admin.display(description="State")
    def state_cell(self, obj: Task) -> str:
        attempts = f"attempt {obj.attempt - obj.attempt_base} of {obj.max_attempts}"
        return cell_html('{}<span class="cr-attempts">{}</span>', self.state_badge(obj),
                           attempts)

    @admin.display(description="Worker", ordering="worker")
    def worker_cell(self, obj: Task) -> str:
        return worker_link(obj.worker_id)

    @admin.display(description="Attempts")
    def attempts(self, obj: Task) -> str:
        return f"{obj.attempt - obj.attempt_base}/{obj.max_attempts}"

    @admin.display(description="Progress", ordering="progress")
    def progress_bar(self, obj: Task) -> str:
        if obj.progress is None:
            return DASH
        percent = round(obj.progress * 100)
        eta = tasklist.task_eta(obj, timezone.now())
        return cell_html(
            '<span class="cr-nowrap" title="{}"><span class="cr-bar"><span style="width: {}%">'
            '</span></span><span class="cr-bar-label">{} %</span></span>{}',
            obj.progress_message,
            percent,
            percent,
            cell_html('<span class="cr-eta">{}</span>', eta) if eta else "",
        )

    @admin.display(description="Created", ordering="id")  # the key's order; finished below
    def times(self, obj: Task) -> str:
        finished = moment(obj.finished_at) if obj.finished_at else ""
        return cell_html('{}<span class="cr-finished">{}</span>', moment(obj.created_at),
                           finished)

    @admin.display(description="Elapsed")
    def elapsed(self, obj: Task) -> str:
        if obj.started_at is None:
            return DASH
        return duration(((obj.finished_at or timezone.now()) - obj.started_at).total_seconds())

    @admin.display(description="Result")
    def result_text(self, obj: Task) -> str:
        return DASH if obj.result is None else pre(repr(obj.result))

    @admin.display(description="Error")
    def error_text(self, obj: Task) -> str:
        if obj.error and obj.state not in FINISHED_TASK_STATES:
            return pre(f"An earlier attempt's; the task is {obj.state} again.\n{obj.error}")
        return pre(obj.error)

    @admin.display(description="Peak memory")
    def peak_memory(self, obj: Task) -> str:
        return size(obj.peak_rss_bytes)

    @admin.display(description="Memory")
    def memory(self, obj: Task) -> str:
        """Its estimate and where that came from, its limit, and (running) what it uses."""
        shown = memory_text.estimate(obj.memory_estimate_mb, obj.memory_source,
                                     obj.memory_estimate_runs)
        parts = [f"estimate {shown}", memory_text.limit(obj.memory_limit_mb)]
        if obj.state == TaskState.RUNNING and obj.worker is not None:
            used = memory_text.in_use(obj.worker.task_rss_bytes, obj.memory_estimate_mb)
            parts.append(f"using {used} now" if used else "")
        return " · ".join(part for part in parts if part)

    @admin.action(
        permissions=["retry"], description="Retry (a fresh budget of attempts)", location=BOTH
    )
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        finished = queryset.filter(state__in=FINISHED_TASK_STATES)
        skipped = queryset.count() - finished.count()
        done = apply(self, request, finished, "retry", lambda t: _none(queue.retry(t.pk)))
        self.message_user(request, f"Retrying {done} task(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} not finished, left alone.", messages.WARNING)

    @admin.action(permissions=["cancel"], description="Cancel", location=BOTH)
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        live = queryset.exclude(state__in=FINISHED_TASK_STATES)
        skipped = queryset.count() - live.count()
        done = apply(self, request, live, "cancel", lambda t: _none(queue.cancel(t.pk)))
        report(self, request, done, f"Cancelled {done} task(s); running ones stop within a second.",
               "No task was cancelled.")
        if skipped:
            self.message_user(request, f"{skipped} already finished, left alone.", messages.WARNING)

    @admin.action(permissions=["submit"], description="Duplicate (enqueue a copy)", location=BOTH)
    def duplicate_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        done = apply(self, request, queryset, "duplicate", duplicate)
        self.message_user(request, f"Enqueued {done} copy(ies).", messages.SUCCESS)


def spec_of(task: Task) -> TaskSpec:
    """What a copy of ``task`` is enqueued with (not its dependencies or its schedule)."""
    return TaskSpec(
        func_path=task.func_path,
        args=list(task.args),
        kwargs=dict(task.kwargs),
        queue=task.queue,
        priority=task.priority,
        max_attempts=task.max_attempts,
        timeout=task.timeout,
        memory_mb=task.memory_mb,
        retry_backoff=task.retry_backoff,
        cpus=task.cpus,
        memory_limit_mb=task.memory_limit_mb,
    )


def duplicate(task: Task) -> str:
    return f"enqueued as task {queue.enqueue(spec_of(task)).pk}"


from .web import admin_nodes, admin_runs  # noqa: E402, F401  (register the nodes' and runs' admin)
