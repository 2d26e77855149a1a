"""Workers say in Redis that they are alive, so that the status can count workers.

Dramatiq's own heartbeats (``dramatiq:__heartbeats__``) come from every process that talks to the
broker, a web process that enqueues as much as a worker: they cannot say whether any worker runs.
This middleware adds each running Worker to a sorted set, scored with the time of its last beat.
"""

import contextlib
import itertools
import logging
import os
import socket
import threading
import time

import redis
from dramatiq import Broker, Middleware, Worker

logger = logging.getLogger(__name__)

#: Worker (host:pid:n) -> Unix time of its last beat.
WORKERS_KEY = "notifications:workers"
BEAT_INTERVAL_S = 5.0


class WorkerHeartbeat(Middleware):
    """Every BEAT_INTERVAL_S, each running worker of this process writes its beat; it leaves on shutdown."""

    def __init__(self, interval_s: float = BEAT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.beating: dict[int, tuple[str, threading.Event]] = {}
        self.numbers = itertools.count(1)

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        client = getattr(broker, "client", None)
        if not isinstance(client, redis.Redis):
            return
        name = f"{socket.gethostname()}:{os.getpid()}:{next(self.numbers)}"
        stop = threading.Event()
        self.beating[id(worker)] = (name, stop)
        threading.Thread(target=self.beat, args=(client, name, stop), daemon=True, name="heartbeat").start()

    def beat(self, client: redis.Redis, name: str, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client.zadd(WORKERS_KEY, {name: time.time()})
            except redis.RedisError as error:
                logger.debug("Could not write the worker's heartbeat: %s", error)
            stop.wait(self.interval_s)

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        name, stop = self.beating.pop(id(worker), ("", None))
        if stop is None:
            return
        stop.set()
        # If Redis does not answer, the beat gets old and the worker is no longer counted.
        with contextlib.suppress(redis.RedisError):
            broker.client.zrem(WORKERS_KEY, name)  # type: ignore[attr-defined]
