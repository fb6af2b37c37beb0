"""ASGI entry point: `gunicorn -c heroes_site/gunicorn.conf.py heroes_site.asgi:application`."""

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import import_module
from typing import Any, TypeVar, cast

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import get_script_prefix
from django.http import HttpRequest, HttpResponseBase
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
    """A request's thread for its sync work (ThreadSensitiveContext), started only if
    the request has any: API requests served by heroes.event_loop_db have none."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self.used = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.used = True
        return super().submit(fn, *args, **kwargs)


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler, with costs of its own removed, request bodies bounded
    (BoundedBody), and the ASGI lifespan opening the API's event-loop database pools
    (heroes.event_loop_db).

    - Django runs each hook of a sync-style middleware (process_request,
      process_response, process_view) in a worker thread, one hop per hook and
      request. settings.MIDDLEWARE keeps Django's names (the deployment checks look
      for them); this handler loads their event-loop twins
      (heroes_site.event_loop_middleware.EVENT_LOOP_TWINS) in their place.
    - Django gives each request a thread of its own for its sync work (each async ORM
      call, the request signals), and at the end of the request joins that thread,
      blocking the event loop meanwhile. Here the thread is let go instead: it ends
      by itself once its last call is done. (Reusing the threads across requests was
      faster still on average, but left some requests waiting for up to a second.)
    - Django sends the request signals through that thread: request_started, and
      request_finished from response.close(). Their receivers (close_old_connections,
      reset_queries...) act on the calling thread's database connections, so they run
      on the event loop instead (`handle`) when the request's thread has none: always
      for request_started (the thread is new), and for request_finished when the
      request never used its thread. A request that did still closes its response on
      it, which gives its connection back to the pool.
    """

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await event_loop_db.lifespan(receive, send)
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django refuses it
        # Still one thread per request, so the request's database connection goes back
        # to the pool when the request ends, as with Django's handler.
        thread = RequestThread()
        try:
            body = BoundedBody(scope, receive, send)
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, body.receive, body.send, thread)
        finally:
            thread.shutdown(wait=False)

    async def handle(
        self,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        thread: RequestThread | None = None,
    ) -> None:
        """Django's ASGIHandler.handle (5.2), with the request signals sent on the event
        loop where their receivers have nothing to do in the request's thread."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)  # changed
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            error_response = cast(HttpResponseBase, error_response)  # given without a request
            body_file.close()
            await self.send_response(error_response, send)
            await self.close_response(error_response, thread)  # changed
            return

        async def process_request(request: HttpRequest, send: Send) -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # a disconnect while sending
                await self.send_response(response, send)
            return response

        # Listen for a disconnect while the response is made.
        responding = asyncio.create_task(process_request(request, send))
        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)), responding]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass  # a client disconnect
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()  # views may handle the cancellation
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = responding.result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await self.close_response(response, thread)  # changed
        body_file.close()

    @staticmethod
    async def close_response(response: HttpResponseBase, thread: RequestThread | None) -> None:
        """response.close(), which sends request_finished: in the request's thread if it
        was started (its connections go back to the pool), else on the event loop."""
        if thread is None or thread.used:
            await sync_to_async(response.close)()
        else:
            response.close()

    def load_middleware(self, is_async: bool = False) -> None:
        configured = settings.MIDDLEWARE
        settings.MIDDLEWARE = [EVENT_LOOP_TWINS.get(path, path) for path in configured]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = configured  # only while the chain is built, at startup


try:
    django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does
    # Need the apps loaded.
    from heroes import event_loop_db
    from heroes_site.event_loop_middleware import EVENT_LOOP_TWINS
    from heroes_site.middleware import BODY_TOO_LARGE, body_over_limit

    application = ASGIHandler()
    # The API, the pages and the admin load now, not on the first request: a mistake
    # shows at start-up, and gunicorn's post_worker_init finds them loaded.
    import_module(settings.ROOT_URLCONF)
except ImproperlyConfigured as error:
    sys.exit(f"Configuration error: {error}")
