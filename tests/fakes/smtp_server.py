"""A local SMTP server on aiosmtpd that records messages and can reject them on demand."""

import socket
import threading
import time
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeSMTP:
    """SMTP sink on 127.0.0.1: records accepted mail, answers DATA with queued rejections first."""

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = None
        self.messages = []
        self.envelopes = []
        self.on_accept = None
        self._rejections = []
        self._changed = threading.Condition()
        self._controller = None

    def start(self):
        self.port = free_port()
        # server_hostname avoids aiosmtpd's socket.getfqdn(), which can stall on DNS.
        self._controller = Controller(
            _Handler(self), hostname=self.host, port=self.port, server_hostname="localhost"
        )
        self._controller.start()
        return self

    def stop(self):
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None

    def reject_next(self, code, text="Rejected by FakeSMTP", times=1):
        with self._changed:
            self._rejections.extend([f"{code} {text}"] * times)

    def reset(self):
        with self._changed:
            self.messages.clear()
            self.envelopes.clear()
            self.on_accept = None
            self._rejections.clear()

    def wait_for_messages(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} email(s) within {timeout}s, got {len(self.messages)}: "
                        f"{[(m['To'], m['Subject']) for m in self.messages]!r} envelopes={self.envelopes!r}"
                    )
                self._changed.wait(remaining)
            return list(self.messages)

    def _receive(self, envelope):
        """Return the SMTP reply to DATA, recording the message unless a rejection is queued."""
        with self._changed:
            if self._rejections:
                return self._rejections.pop(0)
            # SMTP carries CRLF line endings; normalise so bodies compare like the text that was sent.
            content = envelope.content.replace(b"\r\n", b"\n")
            message = message_from_bytes(content, policy=policy.default)
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._changed.notify_all()
            on_accept = self.on_accept
        if on_accept is not None:
            on_accept(message)
        return "250 Message accepted for delivery"


class _Handler:
    """aiosmtpd handler that hands each DATA command to the owning FakeSMTP."""

    def __init__(self, fake):
        self.fake = fake

    async def handle_DATA(self, server, session, envelope):
        return self.fake._receive(envelope)
