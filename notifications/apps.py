from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from anymail.signals import tracking

        from failedjobs.services import add_runtime_options
        from failedjobs.signals import job_failed, jobs_retried, scheduler_starting, synchronous_run_failed

        # Declare the actors on the broker now, so that senders and workers share them.
        from . import checks, gate, receivers, tasks  # noqa: F401
        from . import tracking as email_tracking

        add_runtime_options(*gate.RUNTIME_OPTIONS)

        job_failed.connect(receivers.mark_delivery_failed, dispatch_uid="notifications.mark_delivery_failed")
        jobs_retried.connect(receivers.requeue_deliveries, dispatch_uid="notifications.requeue_deliveries")
        synchronous_run_failed.connect(
            receivers.schedule_synchronous_retry, dispatch_uid="notifications.schedule_synchronous_retry"
        )
        scheduler_starting.connect(
            receivers.log_scheduler_mode, dispatch_uid="notifications.log_scheduler_mode"
        )
        tracking.connect(
            email_tracking.record_tracking_event, dispatch_uid="notifications.record_tracking_event"
        )
