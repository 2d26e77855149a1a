from .twilio import TwilioChannel


class WhatsAppChannel(TwilioChannel):
    """WhatsApp through Twilio: the same API with ``whatsapp:`` in front of both numbers."""

    check_id = "notifications.W002"
    label = "WhatsApp"
    from_setting = "TWILIO_WHATSAPP_FROM"
    address_prefix = "whatsapp:"
