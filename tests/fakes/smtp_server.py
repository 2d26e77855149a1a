"""A local SMTP server on aiosmtpd that records messages and can reject them on demand."""

import socket
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller

from tests.fakes.recording import Recording


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeSMTP(Recording):
    """SMTP sink on 127.0.0.1: records accepted mail, answers DATA with queued rejections first."""

    def __init__(self):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = None
        self.envelopes = []
        self.on_accept = None
        self._rejections = []
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

    def describe(self):
        subjects = [(m["To"], m["Subject"]) for m in self.messages]
        return f"{subjects!r} envelopes={self.envelopes!r}"

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
