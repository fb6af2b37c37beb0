"""Event-loop twins of Django's middleware: the ASGI app (heroes_site.asgi) loads them
in place of the classes settings.MIDDLEWARE names.

Under ASGI, Django runs each hook of a sync-style middleware (process_request,
process_view, process_response) in the request's worker thread: one hop per hook and
request. The hooks of the middleware below only read and write headers and cookies,
so the hop costs more than the hook. A twin is Django's class behind the OnEventLoop
mixin: the same hooks, called on the event loop. Only a process_response that may write
to the database (saving the session or the messages) still goes to the thread, and
only when the request used them.

Only for hooks that do no I/O: Django raises SynchronousOnlyOperation if one reaches
the database anyway. heroes/tests/test_event_loop_middleware.py fails when a Django
upgrade changes the hooks these classes have, or when the ASGI app stops loading the
twins. Under WSGI (and Django's test Client) Django's own classes run.
"""

from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.messages.storage.base import BaseStorage
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware import clickjacking, common, csrf, security
from django.utils.deprecation import MiddlewareMixin

AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class OnEventLoop(MiddlewareMixin):
    """The async path of Django's MiddlewareMixin, with the hooks called on the event
    loop rather than through sync_to_async. Put it before Django's class."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase | None = None
        if process_request := getattr(self, "process_request", None):
            response = process_request(request)
        # Django calls __acall__ only when the next step is async (async_mode).
        response = response or await cast(AsyncGetResponse, self.get_response)(request)
        if process_response := getattr(self, "process_response", None):
            if self.response_writes_to_database(request):
                response = await sync_to_async(process_response)(request, response)
            else:
                response = process_response(request, response)
        return response

    def response_writes_to_database(self, request: HttpRequest) -> bool:
        """Whether this request's process_response may write to the database, and so
        must run in the request's thread."""
        return False


class SecurityMiddleware(OnEventLoop, security.SecurityMiddleware):
    pass


class SessionMiddleware(OnEventLoop, sessions.SessionMiddleware):
    def response_writes_to_database(self, request: HttpRequest) -> bool:
        # The session is lazy: one that no view or template read is not saved.
        return request.session.accessed or settings.SESSION_SAVE_EVERY_REQUEST


class CommonMiddleware(OnEventLoop, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(OnEventLoop, csrf.CsrfViewMiddleware):
    # Django awaits an async process_view on the event loop, a sync one in the thread.
    async def process_view(  # type: ignore[override]  # async on purpose: see above
        self,
        request: HttpRequest,
        callback: Callable,
        callback_args: tuple,
        callback_kwargs: dict,
    ) -> HttpResponseBase | None:
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(OnEventLoop, auth.AuthenticationMiddleware):
    pass  # request.user is lazy: loaded when a view or template asks


class MessageMiddleware(OnEventLoop, messages.MessageMiddleware):
    def response_writes_to_database(self, request: HttpRequest) -> bool:
        # Stored in the session: only when messages were shown or added.
        storage: BaseStorage = request._messages  # type: ignore[attr-defined]  # set by process_request
        return storage.used or storage.added_new


class XFrameOptionsMiddleware(OnEventLoop, clickjacking.XFrameOptionsMiddleware):
    pass


# settings.MIDDLEWARE names Django's classes (the deployment checks look for those
# names); heroes_site.asgi loads each twin in its original's place.
EVENT_LOOP_TWINS = {
    "django.middleware.security.SecurityMiddleware": f"{__name__}.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware": f"{__name__}.SessionMiddleware",
    "django.middleware.common.CommonMiddleware": f"{__name__}.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware": f"{__name__}.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware": (
        f"{__name__}.AuthenticationMiddleware"
    ),
    "django.contrib.messages.middleware.MessageMiddleware": f"{__name__}.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": f"{__name__}.XFrameOptionsMiddleware",
}
