"""A local webhook receiver on 127.0.0.1 that records every POST and answers as it is told."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"
"""Plan step: hold the request open until the receiver is closed (the sender times out)."""


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str


class _IPv6HTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class WebhookReceiver:
    """`plan` holds answers for the next requests (a status, `HANG`, or `(status, body, headers)`);
    once it is used up every request gets `default`."""

    def __init__(self, default: int = 200, host: str = "127.0.0.1") -> None:
        self.default = default
        self.host = host
        self.plan: list[object] = []
        self.requests: list[Received] = []
        self.active = 0
        self.most_active = 0
        """The largest number of requests this receiver held open at the same time."""
        self._changed = threading.Condition()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._changed:
                    step = receiver.plan.pop(0) if receiver.plan else receiver.default
                    receiver.requests.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, self.path))
                    receiver.active += 1
                    receiver.most_active = max(receiver.most_active, receiver.active)
                    receiver._changed.notify_all()
                try:
                    self._answer(step)
                finally:
                    with receiver._changed:
                        receiver.active -= 1

            def _answer(self, step: object) -> None:
                if step == HANG:
                    receiver._release.wait(30)
                    return
                status, payload, headers = step if isinstance(step, tuple) else (step, b"ok", {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        server_class = ThreadingHTTPServer if ":" not in host else _IPv6HTTPServer
        self.httpd = server_class((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.httpd.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Block until at least `count` requests arrived; returns them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} webhook requests, got {len(self.requests)}")
            return list(self.requests)

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
