import logging
import threading
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.middleware import SkipMessage

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


class FailedJobMiddleware(Middleware):
    """Files every message that failed for good as a FailedJob, through services.fail_message.

    Dramatiq rejects ("nacks") a message once: retries exhausted, an exception listed in ``throws``,
    the time limit on the last attempt, or the age limit. If the database cannot be written, the
    message stays in Redis's dead-letter queue, where ``reconcile_dead_letters`` finds it later.

    The nack comes without the exception, and on the consumer's thread, so the exception of each
    message's last attempt is kept here, by message id, until its ack or nack.
    """

    def __init__(self) -> None:
        self.exceptions: dict[str, BaseException] = {}
        self.lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        message.options["attempts"] = message.options.get("attempts", 0) + 1

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            # Kept in the message too: if the failure cannot be written now, the copy left in Redis's
            # dead-letter queue still says what it was.
            message.options["error"] = describe(exception)[:MAX_ERROR_CHARS]
            with self.lock:
                self.exceptions[message.message_id] = exception

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        if message.failed:
            skipped = SkipMessage("Skipped before it ran: past its age limit, or failed by a middleware.")
            with self.lock:
                self.exceptions[message.message_id] = skipped

    def after_ack(self, broker: Broker, message: MessageProxy) -> None:
        self.pop_exception(message)

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        from .services import fail_message, forget_dead_letter

        exception = self.pop_exception(message)
        try:
            fail_message(message, exception)
        except Exception:
            logger.exception(
                "Could not record failed message %s; it stays in the dead-letter queue until reconciled.",
                message.message_id,
            )
            return
        forget_dead_letter(broker, message)

    def pop_exception(self, message: MessageProxy) -> BaseException | None:
        with self.lock:
            return self.exceptions.pop(message.message_id, None)


def describe(exception: BaseException) -> str:
    """One line for the message's options: the error's dotted class name and its text."""
    from .services import underlying_error

    error = underlying_error(exception) or exception
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}: {error}"
