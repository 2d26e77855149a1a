"""The live stream of a user's in-app notifications: Redis pub/sub, then Server-Sent Events.

Whoever writes an in-app notification (a worker) publishes it on the user's Redis channel after the
write commits; whoever changes the unread count (the inbox) publishes that. ``stream_view``, an
async view served over ASGI, holds one stream per open browser tab: one process keeps one Redis
connection for all of its streams (``Hub``), subscribed to the channels of the users it serves.

A stream starts with the unread count, under the id of the user's newest notification. Each event
after that is a notification (``event: notification``, its id the notification's) followed by the
unread count (``event: unread``). A browser that reconnects sends the last id it saw
(``Last-Event-ID``): the notifications written since are read from the database first, so none is
missed. A comment line every NOTIFICATIONS_STREAM_HEARTBEAT_S keeps proxies from closing an idle
stream.

Publishing is fail-soft: when Redis does not answer, the notification is written all the same and
the stream's next reconnection reads it from the database; publishing is skipped for a few seconds.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone

from .conf import setting

logger = logging.getLogger("notifications.stream")
T = TypeVar("T")

#: After Redis failed to take a message, publishing is skipped this long.
BACKOFF_S = 5.0
#: Notifications replayed per database query on a reconnection.
REPLAY_BATCH = 500

_client: redis.Redis | None = None
_down_until = 0.0


def redis_db() -> str:
    """The Redis database of REDIS_URL. Pub/sub channels are shared by all the databases of a server,
    so each channel name carries it: two projects (or test runs) on one server never cross."""
    parts = urlsplit(settings.REDIS_URL)
    return parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]


def channel_name(user_id: int) -> str:
    return f"notifications:{redis_db()}:inapp:{user_id}"


# Publishing, in workers and web processes.


def publish_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=2.0)
    return _client


def publish(user_id: int, message: dict[str, Any]) -> None:
    """Publish on the user's channel; with the stream or the queue off (no Redis), or Redis down, do
    nothing."""
    global _down_until
    if not setting("NOTIFICATIONS_STREAM_ENABLED") or not getattr(settings, "QUEUE_ENABLED", False):
        return
    if time.monotonic() < _down_until:
        return
    try:
        publish_client().publish(channel_name(user_id), json.dumps(message))
    except redis.RedisError as error:
        _down_until = time.monotonic() + BACKOFF_S
        logger.warning("Could not publish to the live stream of user %s: %s", user_id, error)


def publish_notification(user_id: int, notification_id: int, context: dict[str, Any]) -> None:
    publish(
        user_id,
        {
            "type": "notification",
            "id": notification_id,
            "title": context["title"],
            "body": context["body"],
            "link": context["link"],
            "created_at": timezone.now().isoformat(),
            "read_at": None,
        },
    )


def publish_count_changed(user_id: int) -> None:
    publish(user_id, {"type": "unread"})


# Streaming, in an ASGI process.


def in_pool(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``function`` run in the event loop's thread pool, the database connection checked first as
    at the start of a request.

    Not in the request's own thread (``thread_sensitive=True``, what ``request.auser()`` uses):
    under ASGI each request has a thread of its own, so each open stream would hold a database
    connection of its own for as long as it is open. In the pool, the streams of a process share as
    many connections as the pool has threads.
    """

    def run(*args: Any) -> T:
        close_old_connections()
        return function(*args)

    return sync_to_async(run, thread_sensitive=False)


def signed_in_user_id(request: HttpRequest) -> int | None:
    user = get_user(request)
    return int(user.pk) if user.is_authenticated else None


def unread_count(user_id: int) -> int:
    from .models import InAppNotification

    return InAppNotification.objects.filter(recipient_id=user_id, read_at__isnull=True).count()


def newest_id(user_id: int) -> int:
    from .models import InAppNotification

    newest = InAppNotification.objects.filter(recipient_id=user_id).order_by("-pk").first()
    return 0 if newest is None else newest.pk


def written_after(user_id: int, after: int) -> list[dict[str, Any]]:
    from .inbox import as_json
    from .models import InAppNotification

    rows = InAppNotification.objects.filter(recipient_id=user_id, pk__gt=after).order_by("pk")
    return [as_json(row) for row in rows[:REPLAY_BATCH]]


class Hub:
    """One Redis pub/sub connection for every stream of this process (of its event loop).

    Each stream has a queue; a message on a user's channel becomes one chunk of events in the
    queues of that user's streams, written once, the unread count read once for all of them.
    """

    def __init__(self) -> None:
        self.client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        self.pubsub = self.client.pubsub()
        self.queues: dict[int, set[asyncio.Queue]] = {}
        self.subscribed: dict[str, asyncio.Event] = {}
        self.reader: asyncio.Task | None = None

    async def join(self, user_id: int) -> asyncio.Queue:
        """A queue of the user's events, once Redis confirmed the subscription (so none is missed)."""
        queue: asyncio.Queue = asyncio.Queue()
        channel = channel_name(user_id)
        if user_id not in self.queues:
            self.queues[user_id] = set()
            self.subscribed[channel] = asyncio.Event()
            await self.pubsub.subscribe(channel)
        self.queues[user_id].add(queue)
        if self.reader is None or self.reader.done():
            self.reader = asyncio.create_task(self.read())
        await self.subscribed[channel].wait()
        return queue

    async def leave(self, user_id: int, queue: asyncio.Queue) -> None:
        queues = self.queues.get(user_id, set())
        queues.discard(queue)
        if not queues and user_id in self.queues:
            del self.queues[user_id]
            channel = channel_name(user_id)
            self.subscribed.pop(channel, None)
            await self.pubsub.unsubscribe(channel)

    async def read(self) -> None:
        while self.queues:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except redis.RedisError as error:
                logger.warning("The live stream lost Redis: %s", error)
                await asyncio.sleep(1.0)
                continue
            if message is not None:
                await self.handle(message)

    async def handle(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        if message["type"] == "subscribe" and channel in self.subscribed:
            self.subscribed[channel].set()
            return
        if message["type"] != "message":
            return
        user_id = int(channel.rsplit(":", 1)[1])
        if user_id not in self.queues:
            return
        data = json.loads(message["data"])
        # One chunk for all of the user's streams, written once: a notification and the count after
        # it, so that each stream makes one write.
        chunk = sse("unread", {"unread": await in_pool(unread_count)(user_id)})
        notification_id = None
        if data.pop("type", None) == "notification":
            notification_id = data["id"]
            chunk = sse("notification", data, notification_id) + chunk
        for queue in self.queues.get(user_id, ()):
            queue.put_nowait((notification_id, chunk))


_hubs: dict[int, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop."""
    loop = asyncio.get_running_loop()
    if id(loop) not in _hubs:
        _hubs[id(loop)] = Hub()
    return _hubs[id(loop)]


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data)}")
    return "\n".join(lines) + "\n\n"


async def events(user_id: int, last_event_id: int | None) -> AsyncIterator[str]:
    """The user's stream: what was missed since ``last_event_id`` (or the unread count), then live."""
    queue = await hub().join(user_id)
    try:
        replayed: set[int] = set()
        if last_event_id is None:
            newest = await in_pool(newest_id)(user_id)
            count = await in_pool(unread_count)(user_id)
            yield sse("unread", {"unread": count}, newest)
        else:
            after = last_event_id
            while rows := await in_pool(written_after)(user_id, after):
                for row in rows:
                    replayed.add(row["id"])
                    yield sse("notification", row, row["id"])
                after = rows[-1]["id"]
            yield sse("unread", {"unread": await in_pool(unread_count)(user_id)})
        heartbeat = setting("NOTIFICATIONS_STREAM_HEARTBEAT_S")
        while True:
            try:
                async with asyncio.timeout(heartbeat):
                    notification_id, chunk = await queue.get()
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if notification_id not in replayed:
                yield chunk
    finally:
        await hub().leave(user_id, queue)


def last_event_id(request: HttpRequest) -> int | None:
    """The browser's Last-Event-ID header on a reconnection, else ``?last_event_id=`` (a first
    connection cannot set headers), else None."""
    value = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    try:
        return int(value) if value else None
    except ValueError:
        return None


async def stream_view(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """GET /notifications/stream/: the signed-in user's live stream (text/event-stream). Serve it
    over ASGI: under WSGI each open stream would hold a worker thread."""
    if not isinstance(request, ASGIRequest):
        # WSGI would read the endless stream to its end before sending anything.
        return JsonResponse({"error": "The live stream is served over ASGI only."}, status=501)
    user_id = await in_pool(signed_in_user_id)(request)
    if user_id is None:
        return JsonResponse({"error": "Sign in to follow your notifications."}, status=401)
    response = StreamingHttpResponse(
        events(user_id, last_event_id(request)), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
    return response
