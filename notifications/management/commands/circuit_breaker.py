from django.core.management.base import BaseCommand, CommandError

from notifications import breaker, gate


class Command(BaseCommand):
    help = (
        "Show the providers' circuit breakers, or force one open or closed (--open, --close), or give "
        "it back to the automatic mode (--auto). Workers see the change at their next message."
    )

    def add_arguments(self, parser):
        parser.add_argument("provider", nargs="?", help="twilio or email; all of them when omitted")
        mode = parser.add_mutually_exclusive_group()
        choices = {
            "--open": ("open", "hold its messages until told otherwise"),
            "--close": ("closed", "let its messages go, whatever fails"),
            "--auto": ("auto", "back to the automatic mode"),
            "--status": (None, "show the state (the default)"),
        }
        for flag, (const, text) in choices.items():
            mode.add_argument(flag, dest="mode", action="store_const", const=const, help=text)

    def handle(self, *args, provider, mode, **options):
        known = breaker.providers()
        if provider is not None and provider not in known:
            raise CommandError(f"Unknown provider {provider!r}; use one of: {', '.join(known)}.")
        if mode is not None and provider is None:
            raise CommandError("Name the provider whose breaker to set, e.g. circuit_breaker twilio --open.")
        if breaker.redis_client() is None:
            raise CommandError("Circuit breakers live in Redis, and the broker has no Redis (queue off?).")
        if mode is not None:
            status = breaker.get_breaker(provider).force(mode)
            self.stdout.write(str(status))
            if status.state == "closed" and (released := gate.release_held(provider)):
                self.stdout.write(f"{released} held deliveries sent again.")
            return
        for status in gate.breaker_statuses():
            if provider is None or status.provider == provider:
                self.stdout.write(str(status))
