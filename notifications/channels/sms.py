from .twilio import TwilioChannel


class SmsChannel(TwilioChannel):
    check_id = "notifications.W001"
    label = "SMS"
    from_setting = "TWILIO_SMS_FROM"
