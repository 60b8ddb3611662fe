from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import ledger

        # SQLite drops a table's triggers when a migration rebuilds it: put them back.
        post_migrate.connect(ledger.after_migrate, sender=self,
                             dispatch_uid="workers.ledger.after_migrate")
