from django.apps import AppConfig


class FailedJobsConfig(AppConfig):
    name = "failedjobs"
    verbose_name = "Failed jobs"

    def ready(self):
        from . import tasks  # noqa: F401
