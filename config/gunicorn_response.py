"""gunicorn's response writer, changed in one way: a response's head goes out in the same
write as its first body bytes, never alone.

Why: nginx passes a response's status line and headers to the client as soon as gunicorn
sends them (proxy_buffering only buffers the body). A worker killed between its write of the
head and its write of the body (SIGKILL, the out-of-memory killer, a timeout) left the client
with "201 Created", a Content-Length and no body: a truncated answer instead of nginx's JSON
502. With head and body in one write, a worker dies either before anything was sent (nginx
answers 502 in JSON) or after the whole answer was (up to the socket's buffer, a few
megabytes on Linux: a larger body can still be cut, and the client sees a connection closed
before Content-Length).

Installed by config/gunicorn.conf.py: gunicorn's workers build every HTTP/1 response with
gunicorn.http.wsgi.Response, looked up when each request starts.
"""

from gunicorn.http import wsgi


class _Recorder:
    """Stands in for the socket while gunicorn writes a response's head."""

    def __init__(self):
        self.data = b""

    def sendall(self, data):
        self.data += data


class WholeResponse(wsgi.Response):
    _head = b""

    def send_headers(self):
        if self.headers_sent:
            return
        sock, self.sock = self.sock, _Recorder()
        try:
            super().send_headers()
        finally:
            self._head, self.sock = self.sock.data, sock

    def _flush_head(self):
        head, self._head = self._head, b""
        if head:
            self.sock.sendall(head)

    def _emit_body(self, data):
        if not data:
            return  # nothing to send yet: the head waits for the first body bytes
        if self.chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        head, self._head = self._head, b""
        self.sock.sendall(head + data)

    def sendfile(self, respiter):
        self.send_headers()
        self._flush_head()
        return super().sendfile(respiter)

    def close(self):
        # A response with no body (204, 304, HEAD, an empty body) has its head sent here.
        self.send_headers()
        self._flush_head()
        super().close()


def install() -> None:
    wsgi.Response = WholeResponse
