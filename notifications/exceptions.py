"""Errors raised to callers of NotificationsService and by the delivery channels.

They know nothing of Dramatiq: the actors in tasks.py turn a TransientDeliveryError into
``dramatiq.Retry``. A missing setting is an ImproperlyConfigured, outside NotificationError, so that
``except NotificationError`` never hides a misconfiguration.
"""

from django.core.exceptions import ImproperlyConfigured


class NotificationError(Exception):
    """Base class of every error this app raises on purpose about a notification."""


class InvalidNotification(NotificationError, ValueError):
    """The call itself is wrong; nothing was enqueued."""


class InvalidRecipient(InvalidNotification):
    """An email address or phone number that cannot be delivered to."""


class UnknownTemplate(InvalidNotification):
    """No template of that name exists for the channel."""


class InvalidPayload(InvalidNotification):
    """The context cannot be serialised to JSON, or is larger than allowed."""


class ChannelNotConfigured(ImproperlyConfigured):
    """A channel is used without the settings it needs."""

    def __init__(self, channel: str, setting: str) -> None:
        self.channel = channel
        self.setting = setting
        super().__init__(
            f"The {channel} channel needs the {setting} setting (environment variable {setting})."
        )


class DeliveryError(NotificationError):
    """The provider did not accept the message.

    ``code`` is the provider's own error code (a Twilio error code, an SMTP reply code) when there is
    one; ``delay`` (ms) is how long the provider asked to wait before trying again (Retry-After).
    ``expected`` is False for an error of the provider's client that no rule knows: its traceback
    is kept for whoever fixes it.
    """

    permanent = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        code: int | str | None = None,
        status: int | None = None,
        delay: int | None = None,
        expected: bool = True,
    ) -> None:
        self.provider = provider
        self.expected = expected
        self.code = code
        self.status = status
        self.delay = delay
        super().__init__(message)

    def __str__(self) -> str:
        text = super().__str__()
        if self.code is not None:
            return f"{text} ({self.provider} error {self.code})"
        return text

    def without_traceback(self) -> "DeliveryError":
        """This error with no frames, nor the provider exception's under it: cheap to format.

        What it says (provider, code, status, text) is all an operator needs of an expected failure.
        """
        self.__cause__ = None
        self.__suppress_context__ = True
        return self.with_traceback(None)


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: the message goes to FailedJob at once."""

    permanent = True


class TransientDeliveryError(DeliveryError):
    """Worth retrying later."""


class DeliveryOutcomeUnknown(PermanentDeliveryError):
    """An earlier attempt died while talking to the provider; it may or may not have been delivered.

    It is not retried automatically, so that nobody receives the message twice. An operator who
    decides to send it anyway retries it from FailedJob.
    """


class Undelivered(PermanentDeliveryError):
    """The provider accepted the message, then reported that it could not deliver it (a status
    callback, a bounce). Filed as a failed job when no retry is left, or none can help."""
