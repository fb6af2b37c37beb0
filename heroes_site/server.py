"""The HTTP server side of `make serve`: gunicorn's uvicorn worker, speaking HTTP
through uvicorn's httptools protocol with bounds on the size of a request's head and
on the time it may take to arrive."""

import asyncio
import logging

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn_worker import UvicornWorker

logger = logging.getLogger("uvicorn.error")

HEAD_TOO_LARGE_BODY = b"Request header fields too large."
HEAD_TOO_LARGE = b"".join(
    [
        STATUS_LINE[431],
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(HEAD_TOO_LARGE_BODY),
        b"connection: close\r\n\r\n",
        HEAD_TOO_LARGE_BODY,
    ]
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request whose request line and
    headers exceed settings.MAX_REQUEST_HEADER_SIZE bytes (431, connection closed), and
    closing a connection whose request head has not arrived whole within
    settings.REQUEST_HEAD_TIMEOUT seconds of the connection, or of the end of its
    previous response.

    Neither uvicorn nor httptools limits a request's head: httptools keeps a header
    until its end arrives (copying it again with every piece), so one 64 MB header
    grew a worker by hundreds of MB and kept it busy past gunicorn's timeout. Here the
    parser is fed no more of a head than the limit allows: if the head has not ended
    by then, it is too large. That costs a comparison per read. (h11 has such a limit,
    but h11 is much slower than httptools.)

    uvicorn times out an idle keep-alive connection (gunicorn's `keepalive`), but only
    until its first byte: a head begun and never finished, or a connection that never
    sends anything, held a file descriptor for good, and tens of thousands of them
    left a worker none to accept other clients with.
    """

    # uvicorn's own override narrows the argument the same way (and ignores it too).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.max_head_size = settings.MAX_REQUEST_HEADER_SIZE
        self.reading_head = True  # between requests, or in a request line and headers
        self.head_size = 0
        self.head_started_in_this_read = False
        self.head_deadline: asyncio.TimerHandle | None = None
        self.await_head()

    def await_head(self) -> None:
        """Give the next request's head REQUEST_HEAD_TIMEOUT seconds from now."""
        self.cancel_head_deadline()
        timeout = settings.REQUEST_HEAD_TIMEOUT
        self.head_deadline = self.loop.call_later(timeout, self.head_timed_out)

    def cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def head_timed_out(self) -> None:
        self.head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.head_started_in_this_read = False
        room = self.max_head_size - self.head_size
        if self.reading_head and len(data) > room:
            view = memoryview(data)
            super().data_received(view[:room])
            if self.transport.is_closing():
                return
            if self.reading_head and not self.head_started_in_this_read:
                self.refuse_head()  # the head goes on past the limit
                return
            data = view[room:]
        super().data_received(data)
        # A head that started after the end of another request in this read is not
        # counted for this read: where it started is not known, and counting the
        # whole read could refuse a pipelined request within the limit.
        if self.reading_head and not self.head_started_in_this_read:
            self.head_size += len(data)

    def refuse_head(self) -> None:
        logger.warning("Request header fields too large: closing the connection.")
        # Amid another response (pipelined requests) a 431 would corrupt it.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(HEAD_TOO_LARGE)
        self.transport.close()

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.cancel_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.head_size = 0
        self.head_started_in_this_read = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next head's time starts now, unless a pipelined request, whose head is
        # in already, has just started.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_head_deadline()
        super().connection_lost(exc)


class BoundedUvicornWorker(UvicornWorker):
    """gunicorn's uvicorn worker with BoundedHttpToolsProtocol for HTTP."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "http": BoundedHttpToolsProtocol}
