"""A clinic's webhook receiver for the demo: checks each notice's HMAC signature with
the secret it was given, and counts what arrived."""

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services.delivery import verify_signature


class WebhookSink:
    def __init__(self, port: int) -> None:
        self.secrets: dict[str, str] = {}
        """By URL path (``/hooks/<clinic>``)."""
        self.received: Counter[str] = Counter()
        self.refused = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                secret = sink.secrets.get(self.path)
                valid = secret is not None and verify_signature(
                    secret,
                    self.headers.get("X-Coreline-Timestamp", ""),
                    body,
                    self.headers.get("X-Coreline-Signature", ""),
                )
                if valid:
                    sink.received[self.path] += 1
                else:
                    sink.refused += 1
                self.send_response(204 if valid else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # the summary shows the counts

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhooks")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
