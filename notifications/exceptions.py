"""Errors raised to callers of NotificationsService and by the delivery channels."""

import dramatiq
from django.core.exceptions import ImproperlyConfigured


class NotificationError(Exception):
    """Base class of every error this app raises on purpose."""


class InvalidNotification(NotificationError, ValueError):
    """The call itself is wrong; nothing was enqueued."""


class InvalidRecipient(InvalidNotification):
    """An email address or phone number that cannot be delivered to."""


class UnknownTemplate(InvalidNotification):
    """No template of that name exists for the channel."""


class InvalidPayload(InvalidNotification):
    """The context cannot be serialised to JSON, or is larger than allowed."""


class ChannelNotConfigured(NotificationError, ImproperlyConfigured):
    """A channel is used without the settings it needs."""

    def __init__(self, channel, setting):
        self.channel = channel
        self.setting = setting
        super().__init__(
            f"The {channel} channel needs the {setting} setting (environment variable {setting})."
        )


class DeliveryError(NotificationError):
    """The provider did not accept the message.

    ``code`` is the provider's own error code (a Twilio error code, an SMTP reply code) when there is one.
    """

    permanent = False

    def __init__(self, message, *, provider="", code=None, status=None):
        self.provider = provider
        self.code = code
        self.status = status
        super().__init__(message)

    def __str__(self):
        text = super().__str__()
        if self.code is not None:
            return f"{text} ({self.provider} error {self.code})"
        return text


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: the message goes to FailedJob at once."""

    permanent = True


class AlreadyDelivered(NotificationError):
    """The message was delivered before; nothing was sent this time."""


class DeliveryOutcomeUnknown(PermanentDeliveryError):
    """An earlier attempt died while talking to the provider; it may or may not have been delivered.

    It is not retried automatically, so that nobody receives the message twice. An operator who
    decides to send it anyway retries it from FailedJob.
    """


class TransientDeliveryError(DeliveryError, dramatiq.Retry):
    """Worth retrying later; ``delay`` (ms) comes from the provider's Retry-After when it sent one."""

    def __init__(self, message, *, provider="", code=None, status=None, delay=None):
        DeliveryError.__init__(self, message, provider=provider, code=code, status=status)
        self.delay = delay
