"""ASGI entry point: `gunicorn -c heroes_site/gunicorn.conf.py heroes_site.asgi:application`.

`application` is Django's ASGI handler inside a plain ASGI wrapper, which adds:

- the lifespan protocol: each worker opens heroes_site.db's pools when the server starts
  it and closes them when it stops (`heroes_site.db.lifespan`);
- a bounded request body (BoundedBody);
- a request's thread for its sync work that is started only if the request has any,
  and let go at the end rather than joined (RequestThread).

The handler itself is Django's, but for the middleware it loads: settings.MIDDLEWARE
keeps Django's names (the deployment checks look for them), and each is loaded as its
event-loop twin (heroes_site.event_loop_middleware), which saves a thread hop per hook.
"""

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from importlib import import_module
from typing import Any, TypeVar

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroes_site.settings")

Message = Mapping[str, Any]  # an ASGI event
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")


class BoundedBody:
    """One request's receive and send, reading at most DATA_UPLOAD_MAX_MEMORY_SIZE
    bytes of its body.

    Django's read_body writes the whole body to a temporary file (on disk past
    FILE_UPLOAD_MAX_MEMORY_SIZE) before any middleware or view runs: 3 GiB announced
    were 3 GiB written. Here a body announced larger than the limit is not read at all
    (nor is `100 Continue` sent), and one that turns out larger (chunked, no
    Content-Length) is cut where it passes the limit. Either way Django gets an empty
    body and a mark in the scope, on which heroes_site.middleware.request_body_limit
    answers 413; the response closes the connection, so the server reads no more.
    """

    def __init__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self.server_receive = receive
        self.server_send = send
        self.received = 0
        self.cut = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and body_over_limit(int(value)):
                scope[BODY_TOO_LARGE] = True

    async def receive(self) -> Message:
        if self.scope.get(BODY_TOO_LARGE):
            if self.cut:
                # Django listens for a disconnect while the response is made, and
                # would take more body for a protocol error: nothing comes, and the
                # response's end ends the wait.
                never: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
                return await never
            self.cut = True
            return {"type": "http.request", "body": b"", "more_body": False}
        message = await self.server_receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if body_over_limit(self.received):
                self.scope[BODY_TOO_LARGE] = True
                return await self.receive()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.scope.get(BODY_TOO_LARGE):
            message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
        await self.server_send(message)


class RequestThread(ThreadPoolExecutor):
    """A request's thread for its sync work (the ThreadSensitiveContext Django's handler
    would otherwise make): still one thread per request, so the request's database
    connection goes back to the pool when it ends, as with Django's own. Its thread
    starts at the first sync call, if any (API requests served on the pools make none),
    and at the end it is let go, to stop by itself once its last call is done (Django's
    context joins it, in yet another thread)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self.used = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.used = True
        return super().submit(fn, *args, **kwargs)


request_thread: ContextVar[RequestThread | None] = ContextVar("request_thread", default=None)


class EventLoopHandler(ASGIHandler):
    """Django's ASGI handler, without two costs of its own.

    - Each hook of Django's sync-style middleware would run in the request's thread:
      it loads their event-loop twins instead (heroes_site.event_loop_middleware).
    - Django sends the request signals through the request's thread: request_started,
      and request_finished from `response.close()`. Their receivers
      (close_old_connections, reset_queries) act on the calling thread's connections,
      so `handle` sends them on the event loop when that thread has none:
      request_started always (the thread is new), request_finished when the request
      never used its thread. A request that did still closes its response there,
      which gives its connection back to the pool. `handle` is Django 5.2's with the
      lines marked `# changed` (heroes_site/upstream/ keeps Django's, and
      heroes/tests/test_upstream.py shows the difference).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        configured = settings.MIDDLEWARE
        settings.MIDDLEWARE = [EVENT_LOOP_TWINS.get(path, path) for path in configured]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = configured  # only while the chain is built, at startup

    async def handle(self, scope: Any, receive: Receive, send: Send) -> None:  # changed: typed
        """
        Handles the ASGI request. Called via the __call__ method.
        """
        # Receive the HTTP request body as a stream object.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        # Request is complete and can be served.
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)  # changed
        # Get the request and check for basic issues.
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)  # type: ignore[arg-type]
            await sync_to_async(error_response.close)()  # type: ignore[union-attr]
            return

        async def process_request(request, send):  # type: ignore[no-untyped-def]
            response = await self.run_get_response(request)
            try:  # noqa: SIM105
                await self.send_response(response, send)
            except asyncio.CancelledError:
                # Client disconnected during send_response (ignore exception).
                pass

            return response

        # Try to catch a disconnect while getting response.
        tasks = [
            # Check the status of these tasks and (optionally) terminate them
            # in this order. The listen_for_disconnect() task goes first
            # because it should not raise unexpected errors that would prevent
            # us from cancelling process_request().
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # Now wait on both tasks (they may have both finished by now).
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    # Ignore client disconnects.
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                # Allow views to handle cancellation.
                task.cancel()
                try:  # noqa: SIM105
                    await task
                except asyncio.CancelledError:
                    # Task re-raised the CancelledError as expected.
                    pass

        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            thread = request_thread.get()  # changed
            if thread is None or thread.used:  # changed
                await sync_to_async(response.close)()  # changed: indented
            else:  # changed
                response.close()  # changed

        body_file.close()


class Application:
    """The ASGI application: the lifespan, then Django's `handler` with a bounded body
    and a RequestThread."""

    def __init__(self, handler: ASGIHandler) -> None:
        self.handler = handler

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["type"] == "http":
            body = BoundedBody(scope, receive, send)
            receive, send = body.receive, body.send
        thread = RequestThread()
        token = request_thread.set(thread)
        try:
            # Django's handler enters a context of its own inside this one: a no-op.
            async with ThreadSensitiveContext(executor=thread):
                await self.handler(scope, receive, send)
        finally:
            request_thread.reset(token)
            thread.shutdown(wait=False)


try:
    django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does
    # Need the apps loaded.
    from heroes_site.db import lifespan
    from heroes_site.event_loop_middleware import EVENT_LOOP_TWINS
    from heroes_site.middleware import BODY_TOO_LARGE, body_over_limit

    application = Application(EventLoopHandler())
    # The API, the pages and the admin load now, not on the first request: a mistake
    # shows at start-up, and gunicorn's post_worker_init finds them loaded.
    import_module(settings.ROOT_URLCONF)
except ImproperlyConfigured as error:
    sys.exit(f"Configuration error: {error}")
