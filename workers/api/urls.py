"""Routes of the JSON API, at the paths the operators' runbooks name (see docs/api.md)."""

from django.urls import URLPattern, path

from . import runs, views
from .routing import Route

urlpatterns: list[URLPattern] = [
    path("api/workers/status/", Route(views.worker_status), name="api-worker-status"),
    path("api/workers/add/", Route(views.worker_add), name="api-worker-add"),
    path("api/workers/drain/", Route(views.worker_drain), name="api-worker-drain"),
    path(
        "api/workers/<int:worker_id>/abort/", Route(views.worker_abort), name="api-worker-abort"
    ),
    path(
        "api/workers/<int:worker_id>/undrain/", Route(views.worker_undrain),
        name="api-worker-undrain",
    ),
    path("workers/tick/", Route(views.tick), name="api-tick"),
    path("api/tasks/", Route(views.task_list, views.task_submit), name="api-tasks"),
    path("api/tasks/bulk/", Route(views.task_submit_many), name="api-tasks-bulk"),
    path("api/tasks/<int:task_id>/", Route(views.task_detail), name="api-task"),
    path("api/tasks/<int:task_id>/cancel/", Route(views.task_cancel), name="api-task-cancel"),
    path("api/tasks/<int:task_id>/retry/", Route(views.task_retry), name="api-task-retry"),
    path("api/queues/", Route(views.queue_list), name="api-queues"),
    path("api/queues/pause/", Route(views.queue_pause), name="api-queue-pause"),
    path("api/queues/resume/", Route(views.queue_resume), name="api-queue-resume"),
    path("api/runs/", Route(runs.run_list, runs.run_submit), name="api-runs"),
    path("api/runs/<int:run_id>/", Route(runs.run_detail), name="api-run"),
    path("api/runs/<int:run_id>/pause/", Route(runs.run_pause), name="api-run-pause"),
    path("api/runs/<int:run_id>/resume/", Route(runs.run_resume), name="api-run-resume"),
    path("api/runs/<int:run_id>/cancel/", Route(runs.run_cancel), name="api-run-cancel"),
    path("api/schema/", Route(views.openapi), name="api-schema"),
]
