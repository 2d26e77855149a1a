import threading
import time


class Recording:
    """What a fake server received, and a way for tests to wait for it."""

    def __init__(self):
        self.messages = []
        self._changed = threading.Condition()

    def describe(self):
        """What the failure message of wait_for_messages shows of the messages received."""
        return repr(self.messages)

    def wait_for_messages(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{type(self).__name__}: expected {count} message(s) within {timeout}s, "
                        f"got {len(self.messages)}: {self.describe()}"
                    )
                self._changed.wait(remaining)
            return list(self.messages)
