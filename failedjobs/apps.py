from django.apps import AppConfig


class FailedJobsConfig(AppConfig):
    name = "failedjobs"
    verbose_name = "Failed jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import tasks  # noqa: F401
