from django.apps import AppConfig


class SimulationsConfig(AppConfig):
    name = "simulations"
    verbose_name = "Simulations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from workers.web import owners

        from . import signals  # noqa: F401 - connects the receivers
        from .tasklinks import SimulationOwner, SweepOwner

        # task search and links reach simulations, and sweeps through their summary task
        owners.register(SimulationOwner())
        owners.register(SweepOwner())

