"""NotificationsService: the one entry point application code uses to notify people.

Every method checks its input at once (recipient, template, payload), records a Delivery, and hands the
message to a worker when the surrounding transaction commits. Each returns the Delivery.

    from notifications.services import NotificationsService

    notifications = NotificationsService()
    notifications.send_verification_email("ada@example.com", verification_url=url, name="Ada")
"""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict, Unpack

import dramatiq
from django.db import connection, transaction
from django.utils import timezone

from failedjobs import dispatch

from . import outbox, preferences, suppression
from .channels import get_channel
from .channels.twilio import MAX_BODY_CHARS
from .conf import setting
from .exceptions import InvalidNotification, InvalidPayload
from .models import Delivery
from .rendering import resolve_language

#: Each appointment reminder, and how long before the appointment it is due.
REMINDER_LEADS = {"day_before": timedelta(days=1), "hour_before": timedelta(hours=1)}
#: The length of Delivery.idempotency_key and dedup_key: a longer key is refused, never cut.
KEY_MAX_CHARS = 255


class SendOptions(TypedDict, total=False):
    """The keyword arguments every method of NotificationsService takes (see its docstring)."""

    language: str | None
    idempotency_key: str | None
    dedup_key: str
    dedup_window: timedelta | None
    send_at: datetime | None
    delay: timedelta | None
    topic: str
    skipped_because: str
    for_user: Any
    category: str


class Appointment(TypedDict):
    id: Any
    starts_at: datetime
    location: NotRequired[str]
    with_name: NotRequired[str]


ABANDON_RECOVERY_WINDOW = timedelta(hours=24)


class NotificationsService:
    """Send notifications by email, SMS, WhatsApp or in-app.

    Common keyword arguments:

    - ``language``: "en" or "fr"; defaults to the active language (the user's, under LocaleMiddleware).
    - ``idempotency_key``: calling again with the same key returns the first Delivery and sends nothing.
    - ``dedup_key`` and ``dedup_window`` (a timedelta): a second call with the same key within the
      window returns the earlier Delivery and sends nothing.
    - ``for_user`` (a user or a user id): who the notification is for, so that their preferences apply
      (in-app notifications: the recipient). ``category``: one of categories.CATEGORIES, instead of
      the template's.
    """

    def send_verification_email(
        self, email: str, *, verification_url: str, name: str = "", **options: Unpack[SendOptions]
    ) -> Delivery:
        context = {"verification_url": verification_url, "name": name}
        return self.notify("email", email, "verification", context, **options)

    def send_invitation_email(
        self,
        email: str,
        *,
        invite_url: str,
        inviter_name: str,
        organisation: str = "",
        **options: Unpack[SendOptions],
    ) -> Delivery:
        context = {"invite_url": invite_url, "inviter_name": inviter_name, "organisation": organisation}
        return self.notify("email", email, "invitation", context, **options)

    def send_appointment_confirmation(
        self,
        recipient: str,
        *,
        appointment: Appointment,
        channel: str = "email",
        **options: Unpack[SendOptions],
    ) -> Delivery:
        """``appointment``: a dict with ``id``, ``starts_at`` (aware), ``location``, ``with_name``."""
        context = appointment_context(appointment)
        options.setdefault(
            "idempotency_key",
            f"appointment-confirmation:{appointment_key(appointment)}:{channel}:{recipient}",
        )
        options.setdefault("topic", appointment_topic(appointment))
        return self.notify(channel, recipient, "appointment_confirmation", context, **options)

    def send_appointment_reminder(
        self,
        recipient: str,
        *,
        appointment: Appointment,
        lead: str,
        channel: str = "sms",
        **options: Unpack[SendOptions],
    ) -> Delivery:
        """``lead``: "day_before" or "hour_before". Sent now (or at ``send_at``); one per appointment
        time, lead, channel and recipient. ``schedule_appointment_reminders`` sends both at their time.
        """
        if lead not in REMINDER_LEADS:
            raise InvalidNotification(f"lead must be one of {', '.join(REMINDER_LEADS)}, not {lead!r}.")
        context = {**appointment_context(appointment), "lead": lead}
        key = f"appointment-reminder:{appointment_key(appointment)}:{lead}:{channel}:{recipient}"
        options.setdefault("idempotency_key", key)
        options.setdefault("topic", appointment_topic(appointment))
        return self.notify(channel, recipient, f"appointment_reminder_{lead}", context, **options)

    def schedule_appointment_reminders(
        self,
        recipient: str,
        *,
        appointment: Appointment,
        channels: Sequence[str] = ("sms",),
        language: str | None = None,
    ) -> list[Delivery]:
        """Both reminders, the day before and the hour before, on each channel, due at their time.

        A reminder whose time has already passed (an appointment made for this afternoon) is not sent:
        it would say "tomorrow" or "in an hour" too late. Its Delivery is recorded as ``skipped``.
        Calling again for the same appointment time and recipient changes nothing.
        """
        appointment_context(appointment)  # checks it
        deliveries = []
        for channel in channels:
            for lead, before in REMINDER_LEADS.items():
                due = appointment["starts_at"] - before
                if due <= timezone.now():
                    deliveries.append(self.skip_reminder(recipient, appointment, lead, channel, language))
                    continue
                deliveries.append(
                    self.send_appointment_reminder(
                        recipient,
                        appointment=appointment,
                        lead=lead,
                        channel=channel,
                        send_at=due,
                        language=language,
                    )
                )
        return deliveries

    def skip_reminder(
        self, recipient: str, appointment: Appointment, lead: str, channel: str, language: str | None
    ) -> Delivery:
        return self.send_appointment_reminder(
            recipient,
            appointment=appointment,
            lead=lead,
            channel=channel,
            language=language,
            skipped_because="Its time had passed when it was scheduled.",
        )

    def reschedule_appointment_reminders(self, appointment: Appointment) -> list[Delivery]:
        """The appointment moved: its reminders not sent yet are cancelled and made again for its new
        time, for the same recipients, channels and languages. Returns the new ones.
        """
        appointment_context(appointment)  # checks it
        waiting = Delivery.objects.filter(
            topic=appointment_topic(appointment),
            template__startswith="appointment_reminder_",
            status__in=Delivery.WAITING_STATUSES,
        )
        reminders = {(row.recipient, row.channel, row.language) for row in waiting}
        waiting.cancel()
        deliveries = []
        for recipient, channel, language in sorted(reminders):
            deliveries += self.schedule_appointment_reminders(
                recipient, appointment=appointment, channels=[channel], language=language
            )
        return deliveries

    def cancel(
        self,
        *,
        idempotency_key: str | None = None,
        topic: str | None = None,
        appointment: Appointment | None = None,
        delivery: Delivery | None = None,
    ) -> int:
        """Cancel what has not gone yet: by the caller's idempotency key, by topic, by appointment (all
        its notifications still waiting) or one Delivery. Returns how many were cancelled.
        """
        given = [value for value in (idempotency_key, topic, appointment, delivery) if value is not None]
        if len(given) != 1:
            raise InvalidNotification("Give one of idempotency_key, topic, appointment or delivery.")
        if appointment is not None:
            topic = appointment_topic(appointment)
        if idempotency_key is not None:
            return Delivery.objects.filter(idempotency_key=idempotency_key).cancel()
        if topic is not None:
            return Delivery.objects.filter(topic=topic).cancel()
        assert delivery is not None
        return Delivery.objects.filter(pk=delivery.pk).cancel()

    def send_abandon_recovery(
        self, email: str, *, resume_url: str, name: str = "", **options: Unpack[SendOptions]
    ) -> Delivery:
        """Nudge someone who left sign-up half-way; at most once per address a day by default."""
        options.setdefault("dedup_key", f"abandon-recovery:{email}")
        options.setdefault("dedup_window", ABANDON_RECOVERY_WINDOW)
        return self.notify(
            "email", email, "abandon_recovery", {"resume_url": resume_url, "name": name}, **options
        )

    def create_inapp_notification(
        self, user: Any, *, title: str, body: str = "", link: str = "", **options: Unpack[SendOptions]
    ) -> Delivery:
        require_text(title, "title", max_chars=200)
        require_text(body, "body", required=False)
        require_text(link, "link", max_chars=500, required=False)
        context = {"title": title, "body": body, "link": link}
        return self.notify("in_app", user, "in_app", context, **options)

    def send_email(
        self, to: str, *, subject: str, text: str, html: str = "", **options: Unpack[SendOptions]
    ) -> Delivery:
        """A plain email. ``html`` is trusted markup; by default the HTML part is the text, line-broken."""
        require_text(subject, "subject")
        require_text(text, "text")
        require_text(html, "html", required=False)
        return self.notify("email", to, "plain", {"subject": subject, "text": text, "html": html}, **options)

    def send_sms(self, to: str, *, text: str, **options: Unpack[SendOptions]) -> Delivery:
        check_text_message(text)
        return self.notify("sms", to, "plain", {"text": text}, **options)

    def send_whatsapp(self, to: str, *, text: str, **options: Unpack[SendOptions]) -> Delivery:
        check_text_message(text)
        return self.notify("whatsapp", to, "plain", {"text": text}, **options)

    def notify(
        self,
        channel_name: str,
        recipient: Any,
        template: str,
        context: dict[str, Any],
        *,
        language: str | None = None,
        idempotency_key: str | None = None,
        dedup_key: str = "",
        dedup_window: timedelta | None = None,
        send_at: datetime | None = None,
        delay: timedelta | None = None,
        topic: str = "",
        skipped_because: str = "",
        for_user: Any = None,
        category: str = "",
    ) -> Delivery:
        """Send ``template`` on a channel; every method above comes down to this one."""
        channel = get_channel(channel_name)
        channel.check_configured()
        if language is not None:
            require_text(language, "language", max_chars=20)
        language = resolve_language(language)
        check_keys(idempotency_key, dedup_key, dedup_window)
        require_text(topic, "topic", max_chars=KEY_MAX_CHARS, required=False)
        require_text(skipped_because, "skipped_because", required=False)
        due = due_time(send_at, delay)
        clean_recipient = channel.clean_recipient(recipient)
        payload = {
            "channel": channel_name,
            "recipient": clean_recipient,
            "template": template,
            "context": context,
            "language": language,
            "send_at": due,
            "topic": topic,
        }
        channel.check_template(template, language)
        check_text(context, "the notification context")
        check_payload_size(context)
        channel.check_message(payload)  # type: ignore[arg-type]
        withheld = suppression.withheld_because(channel_name, clean_recipient, template)
        if withheld:
            payload.update(status=Delivery.Status.SUPPRESSED, last_error=withheld)
        if skipped_because:
            payload.update(status=Delivery.Status.SKIPPED, last_error=skipped_because)
        elif not withheld:
            preferences.apply(payload, user=for_user, category=category)
        if dedup_key:
            return create_unless_duplicate(payload, idempotency_key, dedup_key, dedup_window)
        return create_and_schedule(payload, idempotency_key, dedup_key)


def require_text(value: Any, name: str, *, max_chars: int | None = None, required: bool = True) -> None:
    """A string argument: of type str, not empty when required, not longer than max_chars."""
    if not isinstance(value, str):
        raise InvalidNotification(f"{name} must be a string, not {type(value).__name__}.")
    if required and not value.strip():
        raise InvalidNotification(f"{name} must not be empty.")
    if max_chars is not None and len(value) > max_chars:
        raise InvalidNotification(f"{name} is at most {max_chars} characters; this one is {len(value)}.")


def check_keys(idempotency_key: Any, dedup_key: Any, dedup_window: Any) -> None:
    if idempotency_key is not None:
        require_text(idempotency_key, "idempotency_key", max_chars=KEY_MAX_CHARS)
        check_text(idempotency_key, "idempotency_key")
    require_text(dedup_key, "dedup_key", max_chars=KEY_MAX_CHARS, required=False)
    check_text(dedup_key, "dedup_key")
    if dedup_key and not isinstance(dedup_window, timedelta):
        raise InvalidNotification("dedup_key needs a dedup_window, a timedelta such as timedelta(hours=1).")


def due_time(send_at: Any, delay: Any) -> datetime | None:
    """When a notification is due: None for at once (also for a time already past)."""
    if send_at is not None and delay is not None:
        raise InvalidNotification("Give send_at or delay, not both.")
    if delay is not None:
        if not isinstance(delay, timedelta) or delay < timedelta(0):
            raise InvalidNotification(
                "delay must be a timedelta of zero or more, such as timedelta(hours=1)."
            )
        send_at = timezone.now() + delay
    if send_at is None:
        return None
    if not isinstance(send_at, datetime) or timezone.is_naive(send_at):
        raise InvalidNotification("send_at must be a timezone-aware datetime.")
    return send_at if send_at > timezone.now() else None


def check_text_message(text: Any) -> None:
    require_text(text, "text")
    if len(text) > MAX_BODY_CHARS:
        raise InvalidNotification(
            f"A text message is at most {MAX_BODY_CHARS} characters; this one is {len(text)}."
        )


def check_text(value: Any, where: str) -> None:
    """Refuse text that the database cannot store: a NUL character, or a lone surrogate."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidPayload(f"{where} contains a NUL character (\\x00).")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidPayload(
                f"{where} contains a lone surrogate, which is not valid Unicode text."
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{where} (a key)")
            check_text(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_text(item, f"{where}[{index}]")


def check_payload_size(context: dict[str, Any]) -> None:
    try:
        encoded = dramatiq.get_encoder().encode(context)
    except (TypeError, ValueError) as error:
        raise InvalidPayload(f"The notification context cannot be serialised to JSON: {error}") from None
    limit = setting("NOTIFICATIONS_MAX_PAYLOAD_BYTES")
    if len(encoded) > limit:
        raise InvalidPayload(f"The notification context is {len(encoded)} bytes; the limit is {limit}.")


def create_unless_duplicate(
    payload: dict[str, Any], idempotency_key: str | None, dedup_key: str, window: timedelta | None
) -> Delivery:
    """The earlier Delivery with this dedup key inside the window, or a new one.

    On PostgreSQL, calls with the same key take turns (an advisory lock held until the transaction
    ends), so two concurrent calls cannot both find no earlier delivery.
    """
    assert window is not None  # check_keys refused it
    with transaction.atomic():
        lock_key(dedup_key)
        earlier = recent_duplicate(dedup_key, window)
        if earlier is not None:
            return earlier
        return create_and_schedule(payload, idempotency_key, dedup_key)


def create_and_schedule(payload: dict[str, Any], idempotency_key: str | None, dedup_key: str) -> Delivery:
    delivery, created = create_delivery(payload, idempotency_key, dedup_key)
    if created and delivery.status == Delivery.Status.QUEUED:
        message = outbox.message_for(delivery, recheck=False)  # checked just now
        ran_here = []
        transaction.on_commit(lambda: ran_here.append(dispatch.send(message)))
        if any(ran_here):  # outside a transaction it ran already: show how it ended
            delivery.refresh_from_db()
    return delivery


def lock_key(key: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


def recent_duplicate(dedup_key: str, window: timedelta) -> Delivery | None:
    since = timezone.now() - window
    return Delivery.objects.filter(dedup_key=dedup_key, created_at__gte=since).order_by("-created_at").first()


def create_delivery(
    payload: dict[str, Any], idempotency_key: str | None, dedup_key: str
) -> tuple[Delivery, bool]:
    """Insert the Delivery and say whether it is new; a caller's key used before gives the earlier one."""
    fields = {
        "status": Delivery.Status.SCHEDULED if payload["send_at"] else Delivery.Status.QUEUED,
        **payload,
        "dedup_key": dedup_key,
        "message_id": str(uuid.uuid4()),
    }
    if idempotency_key is None:
        return Delivery.objects.create(**fields), True
    # ON CONFLICT DO NOTHING: no exception (so no savepoint) when the key was used before; the row
    # read back is ours when it carries our message id.
    Delivery.objects.bulk_create([Delivery(idempotency_key=idempotency_key, **fields)], ignore_conflicts=True)
    delivery = Delivery.objects.get(idempotency_key=idempotency_key)
    return delivery, delivery.message_id == fields["message_id"]


def appointment_context(appointment: Appointment) -> dict[str, str]:
    try:
        starts_at = appointment["starts_at"]
        context = {
            "appointment_id": str(appointment["id"]),
            "starts_at": starts_at.isoformat(),
            "location": appointment.get("location", ""),
            "with_name": appointment.get("with_name", ""),
        }
    except (KeyError, TypeError, AttributeError):
        raise InvalidNotification(
            "appointment must be a dict with 'id' and 'starts_at' (a datetime), "
            "and optionally 'location' and 'with_name'."
        ) from None
    if timezone.is_naive(starts_at):
        raise InvalidNotification("appointment['starts_at'] must be a timezone-aware datetime.")
    return context


def appointment_topic(appointment: Appointment) -> str:
    return f"appointment:{appointment['id']}"


def appointment_key(appointment: Appointment) -> str:
    return f"{appointment['id']}:{appointment['starts_at'].isoformat()}"
