from .twilio import TwilioChannel


class WhatsAppChannel(TwilioChannel):
    """WhatsApp through Twilio: the same API with ``whatsapp:`` in front of both numbers."""

    name = "whatsapp"
    from_setting = "TWILIO_WHATSAPP_FROM"
    address_prefix = "whatsapp:"
