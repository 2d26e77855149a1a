"""Unsubscribe links: in the body and the List-Unsubscribe headers of non-critical emails, signed
for one user and one category, working without a sign-in (GET asks, POST does it, one-click too)."""

import pytest
from django.core import mail
from django.test import Client

from notifications import unsubscribe
from notifications.channels.email import build_message
from notifications.models import Delivery, NotificationPreference
from notifications.preferences import is_enabled
from notifications.services import NotificationsService

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(django_user_model):
    return django_user_model.objects.create(username="ada", email="ada@example.com")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create(username="bob", email="bob@example.com")


def path_of(url):
    assert url.startswith("http://testserver/notifications/unsubscribe/")
    return url.removeprefix("http://testserver")


def invitation(user):
    return NotificationsService().send_invitation_email(
        user.email, invite_url="https://x.test/i", inviter_name="Bob", for_user=user
    )


def test_a_non_critical_email_carries_the_link_in_its_headers_and_body(ada, stub_broker):
    delivery = invitation(ada)
    message = build_message(delivery.payload())  # type: ignore[arg-type]
    url = delivery.context["unsubscribe_url"]

    assert message.extra_headers["List-Unsubscribe"] == f"<{url}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in message.body
    assert f'href="{url}"' in message.alternatives[0].content
    assert unsubscribe.read_token(path_of(url).split("/")[-2]) == (ada.pk, "account")


def test_a_critical_email_has_no_link(ada, stub_broker):
    delivery = NotificationsService().send_verification_email(
        ada.email, verification_url="https://x.test/v", for_user=ada
    )
    message = build_message(delivery.payload())  # type: ignore[arg-type]

    assert "List-Unsubscribe" not in message.extra_headers
    assert "nsubscribe" not in message.body


def test_the_link_asks_then_unsubscribes_without_a_sign_in(ada, stub_broker):
    path = path_of(invitation(ada).context["unsubscribe_url"])
    client = Client(enforce_csrf_checks=True)

    page = client.get(path)
    assert page.status_code == 200 and b"Stop receiving emails about account and invitations" in page.content
    assert is_enabled(ada.pk, "account", "email")  # a GET (a link scanner's) changes nothing

    done = client.post(path)
    assert done.status_code == 200 and b"You are unsubscribed" in done.content
    assert not is_enabled(ada.pk, "account", "email")
    assert is_enabled(ada.pk, "account", "sms")
    assert invitation(ada).status == Delivery.Status.SKIPPED


def test_the_one_click_post_of_a_mail_client_unsubscribes(ada, stub_broker):
    path = path_of(invitation(ada).context["unsubscribe_url"])

    response = Client(enforce_csrf_checks=True).post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 200
    assert not is_enabled(ada.pk, "account", "email")


def test_a_tampered_token_is_refused(ada, bob):
    token = unsubscribe.make_token(ada.pk, "marketing")
    signature = token.rsplit(":", 1)[1]
    forged_for_bob = unsubscribe.make_token(bob.pk, "marketing").rsplit(":", 1)[0] + ":" + signature

    for bad in (forged_for_bob, token[:-2] + "xx", "not-a-token"):
        response = Client().post(f"/notifications/unsubscribe/{bad}/")
        assert response.status_code == 404
    assert not NotificationPreference.objects.exists()


def test_a_link_unsubscribes_only_the_user_it_was_made_for(ada, bob, stub_broker):
    path = path_of(invitation(ada).context["unsubscribe_url"])
    client = Client()
    client.force_login(bob)  # Bob opens Ada's link (forwarded to him)

    client.post(path)

    assert not is_enabled(ada.pk, "account", "email")
    assert is_enabled(bob.pk, "account", "email")


def test_a_token_for_a_critical_category_is_refused(ada):
    response = Client().post(f"/notifications/unsubscribe/{unsubscribe.make_token(ada.pk, 'security')}/")

    assert response.status_code == 404
    assert is_enabled(ada.pk, "security", "email")


def test_without_a_site_url_emails_go_without_a_link(ada, stub_broker, settings):
    settings.NOTIFICATIONS_SITE_URL = ""

    assert "unsubscribe_url" not in invitation(ada).context


@pytest.mark.django_db(transaction=True)
def test_the_email_sent_over_smtp_has_the_headers(ada, fake_smtp, settings):
    settings.QUEUE_ENABLED = False  # sent here, through Django's SMTP backend
    invitation(ada)

    assert mail.outbox == []
    received = fake_smtp.messages[0]
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (
        str(received["List-Unsubscribe"]).strip().startswith("<http://testserver/notifications/unsubscribe/")
    )
