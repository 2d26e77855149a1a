from django.apps import AppConfig


class FailedJobsConfig(AppConfig):
    name = "failedjobs"
    verbose_name = "Failed jobs"
