"""A stand-in for the operator's provisioning endpoint: a real HTTP server on loopback that
counts what it receives, and can be told to fail, hang or refuse."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubBoss:
    def __init__(self) -> None:
        self.mode = "ok"  # ok, fail (HTTP 503), hang (sleep past the timeout), reject (HTTP 400)
        self.hang_seconds = 3.0
        self.calls: Counter[str] = Counter()  # every call, by idempotency key
        self.applied: Counter[str] = Counter()  # services opened, once per key (de-duplicated)
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get("Idempotency-Key", "")
                with stub._lock:
                    stub.calls[key] += 1
                    stub.bodies.append(body)
                    mode = stub.mode
                if mode == "hang":
                    time.sleep(stub.hang_seconds)
                    self._answer(503, {"reason": "hung"})
                    return
                if mode == "fail":
                    self._answer(503, {"reason": "BOSS maintenance"})
                    return
                if mode == "reject":
                    self._answer(400, {"reason": "customer in arrears"})
                    return
                with stub._lock:
                    if stub.applied[key] == 0:
                        stub.applied[key] = 1
                self._answer(200, {"reference": f"boss-{key}"})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): that is the point of "hang"

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/provision"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubBoss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
