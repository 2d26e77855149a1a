from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from api.models import ApiToken


class Command(BaseCommand):
    help = "Make an API token and print its key (shown this once; only its hash is kept)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The client's name, recorded in the admin's history.")
        parser.add_argument(
            "--scope",
            choices=ApiToken.Scope.values,
            default=ApiToken.Scope.READ,
            help="read (default) or act.",
        )
        parser.add_argument(
            "--user", required=True, help="Username the admin's history records the token's actions under."
        )

    def handle(self, *args, name, scope, user, **options):
        owner = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: user}).first()
        if owner is None:
            raise CommandError(f"No user {user!r}.")
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"There is an API token named {name!r} already.")
        _, key = ApiToken.objects.issue(name=name, scope=scope, created_by=owner)
        self.stdout.write(key)
