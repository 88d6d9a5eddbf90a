"""A webhook receiver for the tests and the benchmark, in a process of its own: it verifies
every request's signature with the Standard Webhooks reference library (`standardwebhooks`),
de-duplicates on `webhook-id`, and logs each request as a JSON line.

    python tests/webhook_receiver.py ROUTES_JSON LOG_JSONL

It listens on a free port of 127.0.0.1 and prints "listening on PORT" once ready. ROUTES_JSON
is read again on every request (a test may change it while the receiver runs): a JSON object
from path to how that path answers,

    {"/hook": {"secret": "whsec_...", "statuses": [503, 200], "retry_after": "2", "delay": 0}}

`statuses` is played in order, one per request to the path, the last one repeated (default
[200]); `delay` seconds pass before the answer; `retry_after` is sent with 429 and 503; a 3xx
answer carries `Location: /elsewhere`. A path that is not in ROUTES_JSON is answered 404.

Each request's webhook-id is also written to LOG_JSONL.arrivals as it arrives, before any
delay: what a sender has in flight. A request whose body ends before its Content-Length (its
sender died mid-send) is neither logged nor an arrival, as any HTTP server drops it.

Each log line: path, webhook_id, timestamp (the header), received_at, verified (the
signature checked out), error (why not), duplicate (the id was seen before), status (the
answer), received_at and answered_at, type, subject (data.id) and change_id of the body,
and the body's size.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

ROUTES_PATH, LOG_PATH = sys.argv[1], sys.argv[2]
_lock = threading.Lock()
_requests_per_path: dict[str, int] = {}
_seen_ids: set[str] = set()
_log = open(LOG_PATH, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
# One line per request as it arrives (its webhook-id), before any delay: what is in flight.
_arrivals = open(LOG_PATH + ".arrivals", "a", buffering=1)  # noqa: SIM115


def _routes() -> dict:
    with open(ROUTES_PATH) as routes:
        return json.load(routes)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver: the sender's pool reuses connections

    def do_POST(self):
        received_at = time.time()
        length = int(self.headers.get("content-length", 0))
        body = self.rfile.read(length)
        if len(body) < length:
            # The sender went away mid-body (a worker killed mid-send): as any HTTP server
            # would, this is no request at all, neither an arrival nor a failed signature.
            self.close_connection = True
            return
        with _lock:
            _arrivals.write(f"{self.headers.get('webhook-id')}\n")
        route = _routes().get(self.path)
        if route is None:
            self._answer(404, {})
            return
        with _lock:
            number = _requests_per_path.get(self.path, 0)
            _requests_per_path[self.path] = number + 1
        statuses = route.get("statuses") or [200]
        status = statuses[min(number, len(statuses) - 1)]
        entry = {
            "path": self.path,
            "webhook_id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "received_at": received_at,
            "verified": False,
            "error": "",
            "size": len(body),
        }
        try:
            payload = Webhook(route["secret"]).verify(body, dict(self.headers))
        except (WebhookVerificationError, KeyError, ValueError) as failure:
            entry["error"] = f"{type(failure).__name__}: {failure}"
            payload = json.loads(body) if body.startswith(b"{") else {}
        else:
            entry["verified"] = True
        data = payload.get("data") or {}
        entry.update(type=payload.get("type"), subject=data.get("id"), change_id=data.get("change_id"))
        if route.get("delay"):
            time.sleep(route["delay"])
        with _lock:
            # De-duplication on webhook-id, as a receiver should: a message sent again (a
            # retry, or after a worker died mid-send) is answered but marked.
            entry["duplicate"] = entry["webhook_id"] in _seen_ids
            if 200 <= status < 300 and entry["verified"]:
                _seen_ids.add(entry["webhook_id"])
            entry["status"] = status
            entry["answered_at"] = time.time()
            _log.write(json.dumps(entry) + "\n")
        headers = {}
        if status in (429, 503) and route.get("retry_after"):
            headers["Retry-After"] = route["retry_after"]
        if 300 <= status < 400:
            headers["Location"] = "/elsewhere"
        self._answer(status, headers, route.get("answer", "ok" if status < 300 else "no").encode())

    def _answer(self, status, headers, body=b""):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # the JSON log says it all


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A sender that went away mid-request (a worker killed on purpose) is no error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    server = Server(("127.0.0.1", 0), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
