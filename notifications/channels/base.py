"""What every channel does: check a call before anything is enqueued, then send one message."""

import re

from ..exceptions import UnknownTemplate

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


class BaseChannel:
    """A way of reaching people. Subclasses set ``name`` and implement the three steps."""

    name = ""
    #: True when the channel's ``deliver_once`` both sends and marks the delivery sent, at most once
    #: (raising AlreadyDelivered otherwise), so the delivery row need not be claimed first.
    guarded_by_constraint = False

    def check_configured(self):
        """Raise ChannelNotConfigured naming the missing setting."""

    def clean_recipient(self, recipient):
        """Return the recipient in canonical form, or raise InvalidRecipient."""
        raise NotImplementedError

    def check_template(self, template, language):
        """Raise UnknownTemplate unless the template exists for this channel."""
        if not isinstance(template, str) or not TEMPLATE_NAME.match(template):
            raise UnknownTemplate(f"{template!r} is not a valid {self.name} template name.")

    def send(self, payload):
        """Send one message and return the provider's id for it; raise DeliveryError when refused."""
        raise NotImplementedError
