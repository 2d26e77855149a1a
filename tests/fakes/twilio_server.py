"""A fake Twilio REST API (Messages.json: create and list) served over local HTTP.

Point the real SDK at it with ``client.api.base_url = fake.url``. It records what Twilio would use
of each message (ContentSid, ContentVariables, StatusCallback, MessagingServiceSid), and calls a
message's StatusCallback URL as Twilio does: a form POST signed with ``X-Twilio-Signature``, computed
by the SDK's own RequestValidator over the URL and the parameters with the auth token.
"""

import base64
import binascii
import json
import re
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import Request, urlopen

from twilio.request_validator import RequestValidator

from tests.fakes.recording import Recording

#: The auth token of tests/settings.py and of the worker processes' environment.
AUTH_TOKEN = "test-auth-token"

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account_sid>[^/]+)/Messages\.json$")


def error_body(status, code, message):
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return {"code": code, "message": message, "more_info": more_info, "status": status}


def basic_auth_username(header):
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[len("Basic ") :], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def message_resource(message):
    now = message.get("date_created") or formatdate(usegmt=True)
    uri = f"/2010-04-01/Accounts/{message['account_sid']}/Messages/{message['sid']}"
    return {
        "account_sid": message["account_sid"],
        "api_version": "2010-04-01",
        "body": message["body"],
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": message["from"],
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": message["sid"],
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": message["to"],
        "uri": f"{uri}.json",
    }


class FakeTwilio(Recording):
    """In-process fake of Twilio's ``POST .../Messages.json`` with scriptable failures."""

    def __init__(self):
        super().__init__()
        self.url = None
        self.requests_seen = 0
        self.on_accept = None
        self.on_request = None
        self._failures = []
        self._always = None
        self._delays = []
        self.lookups_seen = 0
        self.auth_token = AUTH_TOKEN
        #: Statuses to report to each accepted message's StatusCallback, in order, once it is answered.
        self.auto_statuses = []
        self.callbacks = []
        self._server = None
        self._thread = None

    def start(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _TwilioHandler)
        self._server.fake = self
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-twilio", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def fail_next(self, status, code, message="Fake Twilio error", retry_after=None, times=1):
        failure = (status, code, message, retry_after)
        with self._changed:
            self._failures.extend([failure] * times)

    def delay_next(self, seconds, times=1):
        """Answer the next ``times`` POSTs only after ``seconds``, before deciding anything."""
        with self._changed:
            self._delays.extend([seconds] * times)

    def fail_always(self, status, code, message="Fake Twilio error"):
        with self._changed:
            self._always = (status, code, message, None)

    def reset(self):
        with self._changed:
            self.messages.clear()
            self.requests_seen = 0
            self.lookups_seen = 0
            self.on_accept = None
            self.on_request = None
            self.auto_statuses = []
            self.callbacks.clear()
            self._failures.clear()
            self._always = None
            self._delays.clear()

    def describe(self):
        return f"{self.messages!r} (requests seen: {self.requests_seen})"

    def status_parameters(self, message, status, error_code=None):
        """The form Twilio posts to a StatusCallback."""
        parameters = {
            "AccountSid": message["account_sid"],
            "ApiVersion": "2010-04-01",
            "From": message["from"],
            "MessageSid": message["sid"],
            "MessageStatus": status,
            "SmsSid": message["sid"],
            "SmsStatus": status,
            "To": message["to"],
        }
        if message.get("messaging_service_sid"):
            parameters["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            parameters["ErrorCode"] = str(error_code)
        return parameters

    def send_status(self, message, status, error_code=None, *, signature=None, url=None):
        """POST a status callback for ``message`` as Twilio does; return the HTTP status answered.

        ``signature``: None signs it correctly, "" sends none, any other text is sent as is (forged).
        ``url``: another URL to post to (the signature is still over the message's StatusCallback).
        """
        callback = message["status_callback"]
        parameters = self.status_parameters(message, status, error_code)
        if signature is None:
            signature = RequestValidator(self.auth_token).compute_signature(callback, parameters)
        return self.post_signed(url or callback, parameters, signature)

    def post_signed(self, url, parameters, signature):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature:
            headers["X-Twilio-Signature"] = signature
        request = Request(url, data=urlencode(parameters).encode(), headers=headers, method="POST")
        try:
            with urlopen(request, timeout=10) as response:
                answered = response.status
        except HTTPError as error:
            answered = error.code
        with self._changed:
            self.callbacks.append((url, parameters.get("MessageStatus"), answered))
            self._changed.notify_all()
        return answered

    def _report_statuses(self, message):
        statuses = list(self.auto_statuses)
        if statuses and message.get("status_callback"):
            for status in statuses:
                error_code = None
                if isinstance(status, tuple):
                    status, error_code = status
                self.send_status(message, status, error_code)

    def _next_delay(self):
        with self._changed:
            return self._delays.pop(0) if self._delays else 0

    def _list(self, account_sid, to, from_):
        """Messages of the account, newest first, filtered as Twilio's To and From parameters do."""
        with self._changed:
            self.lookups_seen += 1
            found = [
                message
                for message in self.messages
                if message["account_sid"] == account_sid
                and (to is None or message["to"] == to)
                and (from_ is None or message["from"] == from_)
            ]
        return list(reversed(found))

    def _next_failure(self):
        """Count the request and pop the error to answer with, if any."""
        with self._changed:
            self.requests_seen += 1
            if self._failures:
                return self._failures.pop(0)
            return self._always

    def _accept(self, account_sid, fields, auth_username):
        message = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": account_sid,
            "to": fields.get("To", ""),
            "from": fields.get("From", ""),
            "body": fields.get("Body", ""),
            "content_sid": fields.get("ContentSid"),
            "content_variables": json.loads(fields["ContentVariables"])
            if "ContentVariables" in fields
            else None,
            "status_callback": fields.get("StatusCallback"),
            "messaging_service_sid": fields.get("MessagingServiceSid"),
            "auth_ok": auth_username == account_sid,
            "date_created": formatdate(usegmt=True),
        }
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
            on_accept = self.on_accept
        if on_accept is not None:
            on_accept(message)
        return message


class _TwilioHandler(BaseHTTPRequestHandler):
    """Routes requests to the FakeTwilio stored on the server as ``server.fake``."""

    # Keep-alive, as the real API: the SDK reuses its connection.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the body waits for the
    # client's delayed ACK of the headers (up to 40 ms on Linux) on every kept-alive request.
    disable_nagle_algorithm = True

    def do_POST(self):
        fields = self._read_form()  # always, so that a kept-alive connection stays in step
        match = MESSAGES_PATH.match(urlsplit(self.path).path)
        if match is None:
            self._not_found()
            return
        # What to answer is decided on arrival, then the answer waits: a request delayed and refused
        # is refused, whatever arrives meanwhile.
        if self.server.fake.on_request is not None:
            self.server.fake.on_request()
        failure = self.server.fake._next_failure()
        delay = self.server.fake._next_delay()
        if delay:
            time.sleep(delay)
        if failure is not None:
            status, code, message, retry_after = failure
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            self._send_json(status, error_body(status, code, message), headers)
            return
        auth_username = basic_auth_username(self.headers.get("Authorization"))
        message = self.server.fake._accept(match["account_sid"], fields, auth_username)
        self._send_json(201, message_resource(message))
        # After the answer, as Twilio does: the callbacks may still beat the sender's bookkeeping.
        self.server.fake._report_statuses(message)

    def do_GET(self):
        url = urlsplit(self.path)
        match = MESSAGES_PATH.match(url.path)
        if match is None:
            self._not_found()
            return
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        found = self.server.fake._list(match["account_sid"], query.get("To"), query.get("From"))
        page = {
            "messages": [message_resource(message) for message in found],
            "page": 0,
            "page_size": len(found),
            "first_page_uri": url.path,
            "next_page_uri": None,
            "previous_page_uri": None,
            "uri": self.path,
        }
        self._send_json(200, page)

    def _not_found(self):
        message = f"The requested resource {urlsplit(self.path).path} was not found"
        self._send_json(404, error_body(404, 20404, message))

    def _read_form(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        return {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}

    def _send_json(self, status, payload, headers=None):
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except ConnectionError:
            # The client may be gone already, e.g. a worker killed from on_accept.
            pass

    def log_message(self, format, *args):
        pass
