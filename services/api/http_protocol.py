"""HTTP/1.1 parsed by httptools (llhttp), with a bound on what a request may make the
server hold before it is handed on.

llhttp streams, but a request's line, each header field and a chunked body's
trailers are gathered in memory until they end (uvicorn keeps the URL, httptools the
field being read), and uvicorn's httptools protocol sets no bound on them: one
endless header, sent slowly or fast, would grow without end.  ``BoundedHttpTools``
counts the bytes fed to the parser since it last handed something on (a complete
head, body bytes, a complete message) and refuses past ``MAX_HEAD_BYTES``: 431 when
the connection is between requests, else it only closes, since an answer then would
interleave with a response already under way.  A head's count starts where the
previous message ended, so keep-alive and pipelined requests are each bounded on
their own.
"""

from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# Ample for a bearer token, a session cookie and a browser's headers.
MAX_HEAD_BYTES: Final = 16 * 1024
_REFUSAL: Final = b"request head over 16384 bytes"


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over ``MAX_HEAD_BYTES``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held = 0  # bytes fed since the parser last handed something on
        self._handed_on = False

    def data_received(self, data: bytes) -> None:
        # Fed in pieces no longer than the room left, so the count is exact while no
        # piece hands anything on.  A piece that does may end inside the next head,
        # whose bytes in it are not known: its count starts after that piece, which
        # lets such a head hold at most twice the bound, still a bound.
        while data:
            room = MAX_HEAD_BYTES - self._held
            if room == 0:
                self._refuse()
                return
            piece, data = data[:room], data[room:]
            self._handed_on = False
            super().data_received(piece)
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # refused as invalid, or upgraded
            self._held = 0 if self._handed_on else self._held + len(piece)

    def on_headers_complete(self) -> None:
        self._handed_on = True
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._handed_on = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._handed_on = True
        super().on_message_complete()

    def _refuse(self) -> None:
        self.logger.warning("Request head over %d bytes refused.", MAX_HEAD_BYTES)
        cycle = self.cycle
        between_requests = cycle is None or (cycle.response_complete and not cycle.more_body)
        if between_requests and not self.pipeline:
            head = [STATUS_LINE[431]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(
                b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n" % len(_REFUSAL)
            )
            self.transport.write(b"".join(head) + _REFUSAL)
        self.transport.close()
