from .twilio import TwilioChannel


class SmsChannel(TwilioChannel):
    name = "sms"
    from_setting = "TWILIO_SMS_FROM"
