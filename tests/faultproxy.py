"""A fault-injecting HTTP proxy in front of the test S3 server: a flaky object store, on purpose.

Every `slow_every`-th request is answered `503 SlowDown` (S3's throttling error), every `error_every`-th
`500 InternalError`, and every `reset_every`-th has its connection dropped with a TCP reset before any answer;
the rest are forwarded unchanged, the Host header included, so that SigV4 signatures still verify upstream.
Counters say how many of each happened, so a test can prove the faults were really injected.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import struct
import threading
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
S3_ERROR = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'


class FaultProxy:
    def __init__(self, upstream: str, *, slow_every: int = 0, error_every: int = 0, reset_every: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.slow_every, self.error_every, self.reset_every = slow_every, error_every, reset_every
        self.requests = self.slowed = self.errored = self.reset = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fault(self) -> str | None:
        """The fault for the next request, if any (the reset, the throttle and the error take turns)."""
        with self._lock:
            self.requests += 1
            n = self.requests
            for every, kind in ((self.reset_every, "reset"), (self.slow_every, "slow"), (self.error_every, "error")):
                if every and n % every == 0:
                    if kind == "reset":
                        self.reset += 1
                    elif kind == "slow":
                        self.slowed += 1
                    else:
                        self.errored += 1
                    return kind
            return None


def _handler(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

        def log_message(self, *args) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _relay(self) -> None:
            body = self._body()
            fault = proxy.fault()
            if fault == "reset":
                # SO_LINGER 0: close() sends RST, as a dying load balancer would.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if fault is not None:
                code, status, message = (
                    ("SlowDown", 503, "Please reduce your request rate.")
                    if fault == "slow"
                    else ("InternalError", 500, "We encountered an internal error. Please try again.")
                )
                payload = S3_ERROR.format(code=code, message=message).encode()
                self.send_response_only(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response_only(answer.status, answer.reason)
            for k, v in answer.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            # A HEAD answer carries the object's length and no body.
            length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

    return Handler
