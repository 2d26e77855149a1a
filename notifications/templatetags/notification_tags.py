from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime

register = template.Library()


@register.filter
def as_datetime(value):
    """Turn an ISO 8601 string from a message payload back into a datetime in the current time zone."""
    if not value:
        return value
    parsed = parse_datetime(value) if isinstance(value, str) else value
    if parsed is None:
        return value
    if timezone.is_aware(parsed):
        return timezone.localtime(parsed)
    return parsed
