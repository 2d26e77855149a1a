import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

#: Tokens start with this, so that a leaked one is recognisable (secret scanners, logs).
KEY_PREFIX = "ntf_"
#: last_used_at is written at most this often per token: not one UPDATE per request.
LAST_USED_PRECISION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    """SHA-256 of a key. Keys are 256 random bits, so a fast hash is enough: nothing to brute-force."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def issue(self, *, name: str, scope: str, created_by: Any) -> tuple["ApiToken", str]:
        """A new token and its key. Only the key's hash is stored: the key is shown once, now."""
        token = self.model(name=name, scope=scope, created_by=created_by)
        key = token.set_new_key()
        token.save()
        return token, key

    def authenticate(self, key: str) -> "ApiToken | None":
        """The token of this key, revoked or not, or None; notes when it was last used."""
        token = self.select_related("created_by").filter(key_hash=hash_key(key)).first()
        if token is not None and token.revoked_at is None:
            token.touch()
        return token


class ApiToken(models.Model):
    """A client of the HTTP API (a back-office, a script, a bot), with what it may do."""

    class Scope(models.TextChoices):
        READ = "read", "Read: list and look (recipients and arguments masked)"
        ACT = "act", "Act: read unmasked, retry, resolve, delete, cancel"

    name = models.CharField(max_length=100, unique=True, help_text="Recorded in the admin's history.")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    key_start = models.CharField(
        max_length=10, editable=False, help_text="The start of the key, to tell tokens apart."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        editable=False,
        help_text="The admin's history records this token's actions under this user, with its name.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return self.name

    @property
    def may_act(self) -> bool:
        return self.scope == self.Scope.ACT

    def set_new_key(self) -> str:
        """Give the token a new random key (saved by the caller); return the key, which is not kept."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.key_hash = hash_key(key)
        self.key_start = key[:10]
        return key

    def touch(self) -> None:
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= LAST_USED_PRECISION:
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now

    def revoke(self) -> None:
        ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
