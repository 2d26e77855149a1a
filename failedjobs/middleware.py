import logging

from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)


class FailedJobMiddleware(Middleware):
    """Writes every message that failed for good into FailedJob.

    Dramatiq rejects ("nacks") a message once: retries exhausted, an exception listed in ``throws``,
    the time limit on the last attempt, or the age limit. If the database cannot be written, the
    message stays in Redis's dead-letter queue, where ``reconcile_dead_letters`` finds it later.
    """

    def before_process_message(self, broker, message):
        message.options["attempts"] = message.options.get("attempts", 0) + 1

    def after_nack(self, broker, message):
        from .services import forget_dead_letter, record_failure

        try:
            record_failure(message, message._exception)
        except Exception:
            logger.exception(
                "Could not record failed message %s; it stays in the dead-letter queue until reconciled.",
                message.message_id,
            )
            return
        forget_dead_letter(broker, message)
