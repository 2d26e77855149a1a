"""Whatever a caller passes, the call raises a documented exception or the notification is accounted for."""

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failedjobs.models import FailedJob
from notifications.exceptions import ChannelNotConfigured, NotificationError
from notifications.models import Delivery
from notifications.services import NotificationsService

pytestmark = pytest.mark.django_db

DOCUMENTED = (NotificationError, ChannelNotConfigured)
ACCOUNTED_FOR = {Delivery.Status.SENT, Delivery.Status.QUEUED, Delivery.Status.SENDING}

anything = st.one_of(
    st.text(max_size=300),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=2),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)
text_or_anything = st.one_of(st.text(max_size=2000), anything)
options = st.fixed_dictionaries(
    {},
    optional={
        "language": st.one_of(st.sampled_from(["en", "fr", "de", "en-us"]), anything),
        "idempotency_key": st.one_of(st.text(min_size=1, max_size=300), anything),
        "dedup_key": st.one_of(st.text(max_size=300), anything),
        "dedup_window": st.one_of(st.just(timedelta(hours=1)), anything),
    },
)
recipients = st.one_of(
    st.sampled_from(["ada@example.com", "+33612345678", "06 12 34 56 78", "not an address"]), anything
)


@st.composite
def calls(draw):
    method = draw(st.sampled_from(["send_email", "send_sms", "send_whatsapp", "create_inapp_notification"]))
    if method == "send_email":
        arguments = {"subject": draw(text_or_anything), "text": draw(text_or_anything)}
    elif method == "create_inapp_notification":
        arguments = {"title": draw(text_or_anything), "body": draw(text_or_anything)}
    else:
        arguments = {"text": draw(text_or_anything)}
    return method, draw(recipients), {**arguments, **draw(options)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=calls())
def test_any_call_raises_a_documented_error_or_ends_accounted_for(
    call, settings, django_user_model, fake_twilio, django_capture_on_commit_callbacks
):
    settings.QUEUE_ENABLED = False  # run at once, so that each example's outcome is known
    method, recipient, arguments = call
    if method == "create_inapp_notification" and recipient == "ada@example.com":
        recipient = django_user_model.objects.get_or_create(username="ada")[0]

    try:
        with django_capture_on_commit_callbacks(execute=True):
            delivery = getattr(NotificationsService(), method)(recipient, **arguments)
    except DOCUMENTED:
        return
    delivery.refresh_from_db()
    if delivery.status not in ACCOUNTED_FOR:
        assert delivery.status == Delivery.Status.FAILED
        assert FailedJob.objects.filter(message_id=delivery.message_id).exists()
