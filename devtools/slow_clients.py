"""Slow or hostile clients for a server on 127.0.0.1, and a probe of its slowest answers
meanwhile (tests/system/test_production.py, bench/slow_clients.py)."""

import contextlib
import socket
import threading
import time

from devtools.net import request


class SlowClients:
    """`count` connections to 127.0.0.1:port that each send `head`, then `trickle`, one byte
    per second (from one thread), as a slow or hostile client would. `closed_after` holds,
    per connection, the seconds after it opened at which the server closed it (None: open)."""

    def __init__(self, port: int, count: int, head: bytes, trickle: bytes):
        self.sockets = []
        self.opened_at = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setblocking(False)
            self.sockets.append(sock)
            self.opened_at.append(time.monotonic())
            if head:
                sock.sendall(head)
        self.trickle = trickle
        self.closed_after: list[float | None] = [None] * count
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        position = 0
        while not self._stop:
            for index, sock in enumerate(self.sockets):
                if self.closed_after[index] is None and self._server_closed(sock):
                    self.closed_after[index] = time.monotonic() - self.opened_at[index]
                elif self.closed_after[index] is None and position < len(self.trickle):
                    with contextlib.suppress(BlockingIOError):
                        sock.send(self.trickle[position : position + 1])
            position += 1
            # A second until the next byte, noticing closed connections meanwhile.
            for _ in range(10):
                if self._stop:
                    return
                time.sleep(0.1)
                for index, sock in enumerate(self.sockets):
                    if self.closed_after[index] is None and self._server_closed(sock):
                        self.closed_after[index] = time.monotonic() - self.opened_at[index]

    @staticmethod
    def _server_closed(sock) -> bool:
        """Closed, reset, or answered (an answer to a request not yet sent ends it too)."""
        try:
            sock.recv(65536)
            return True
        except BlockingIOError:
            return False
        except OSError:
            return True

    def still_open(self) -> int:
        return sum(1 for closed in self.closed_after if closed is None)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        for sock in self.sockets:
            sock.close()


def slowest_answers(port: int, seconds: float, requests: list[tuple]) -> dict[str, tuple[float, list]]:
    """Send each (name, method, path, body, headers) in turn, again and again for `seconds`,
    one at a time; per name, the slowest answer's seconds and every status seen. A request
    that got no answer within 10 s counts as 10 s with status None."""
    slowest: dict[str, tuple[float, list]] = {name: (0.0, []) for name, *_ in requests}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, method, path, body, headers in requests:
            started = time.monotonic()
            try:
                status = request(port, method, path, body=body, headers=headers, timeout=10)[0]
            except OSError:
                status = None
            elapsed = time.monotonic() - started
            worst, statuses = slowest[name]
            slowest[name] = (max(worst, elapsed), [*statuses, status])
            time.sleep(0.1)
    return slowest
