"""The site's middleware, all of it able to run on the event loop, so under ASGI a
request crosses it without a hop to a worker thread. Django's own middleware gets
event-loop twins at the end of this module, which heroes_site.asgi loads in place
of the originals."""

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware import clickjacking, common, csrf, security
from django.template.loader import render_to_string
from django.utils.cache import patch_cache_control
from django.utils.decorators import async_only_middleware
from django.utils.deprecation import MiddlewareMixin

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]

request_logger = logging.getLogger("heroes.requests")

# A client's X-Request-ID is kept only if it is short and plain, so it cannot forge
# log lines.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# No exception is needed for the admin or Swagger UI: Django's admin and ninja's docs
# page (its bundled files, served because "ninja" is in INSTALLED_APPS) use no inline
# script or style and nothing from another origin. test_csp.py checks them in a browser.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@async_only_middleware
def request_log(get_response: Handler) -> Handler:
    """One log line per request (method, path, status, duration, request id), and
    the request id echoed in X-Request-ID. Only these fields are logged: never
    headers, query strings, bodies or cookies, so no credential reaches the logs."""

    async def middleware(request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = request.headers.get("X-Request-ID", "")
        if not REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        request.request_id = request_id
        response = await get_response(request)
        response["X-Request-ID"] = request_id
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        request_logger.info(
            "%s %s %s %.1fms request_id=%s",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            request_id,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
                "request_id": request_id,
            },
        )
        return response

    return middleware


@async_only_middleware
def content_security_policy(get_response: Handler) -> Handler:
    """Only the site's own origin may supply scripts, styles, images and frames."""

    async def middleware(request: HttpRequest) -> HttpResponse:
        response = await get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    return middleware


@async_only_middleware
def private_for_sessions(get_response: Handler) -> Handler:
    """`Cache-Control: private` on every response to a logged-in user, so no shared
    cache (a proxy, a CDN) keeps a page made for them; public pages and static files
    (served before this middleware) are left cacheable.

    "Logged in" is read from the session cookie, sent by the request or set by the
    response (the login itself), not from the session: loading it would cost a query
    and a thread hop on every such request, including API reads that never look at
    the user. A leftover cookie of an ended session only makes a page private.
    Place it just before SessionMiddleware, which sets the cookie.
    """
    cookie = settings.SESSION_COOKIE_NAME

    async def middleware(request: HttpRequest) -> HttpResponse:
        response = await get_response(request)
        if cookie in request.COOKIES or cookie in response.cookies:
            patch_cache_control(response, private=True)
        return response

    return middleware


@async_only_middleware
def api_errors_as_json(get_response: Handler) -> Handler:
    """Every error under API_V1_PREFIX is JSON `{"detail": ...}`, never an HTML page.

    ninja answers its own errors in JSON; this covers what happens outside it:
    unknown paths (Django's 404), unsupported methods (ninja's empty 405) and errors
    Django turns into its HTML 500 page.
    """
    prefix = settings.API_V1_PREFIX.rstrip("/") + "/"

    async def middleware(request: HttpRequest) -> HttpResponse:
        response = await get_response(request)
        if (
            response.status_code < 400
            or not request.path.startswith(prefix)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        json_response = JsonResponse(
            {"detail": response.reason_phrase}, status=response.status_code
        )
        for header, value in response.items():  # Allow, security headers, ...
            if header.lower() not in ("content-type", "content-length"):
                json_response[header] = value
        return json_response

    return middleware


# Set in the ASGI scope by heroes_site.asgi when it stopped reading a body at the limit.
BODY_TOO_LARGE = "heroes.body_too_large"


def body_over_limit(size: int) -> bool:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return limit is not None and size > limit


@async_only_middleware
def request_body_limit(get_response: Handler) -> Handler:
    """413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE, whatever the view would do.

    Django checks the limit only when a view reads the body, and then answers 400
    (or, inside the API, 500). Under make serve the body is not even read:
    heroes_site.asgi stops at the limit and marks the request; under other servers
    (runserver, the test client) the Content-Length decides. The whole body counts,
    multipart file parts included: the site takes no uploads.
    """
    prefix = settings.API_V1_PREFIX.rstrip("/") + "/"

    async def middleware(request: HttpRequest) -> HttpResponse:
        scope = getattr(request, "scope", {})
        try:
            announced = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            announced = 0  # Django's own parsing has the say
        if not (scope.get(BODY_TOO_LARGE) or body_over_limit(announced)):
            return await get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if request.path.startswith(prefix):
            detail = f"The request body is larger than the limit of {limit} bytes."
            return JsonResponse({"detail": detail}, status=413)
        page = render_to_string("413.html", {"PROJECT_NAME": settings.PROJECT_NAME, "limit": limit})
        return HttpResponse(page, status=413)

    return middleware


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A friendly 503 page, not a 500, while the database cannot be reached."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logging.getLogger(__name__).error(
            "Database unavailable on %s %s: %s", request.method, request.path, exception
        )
        # Rendered without the request: its context processors would query the
        # database (the session, the user) and fail again.
        page = render_to_string("503.html", {"PROJECT_NAME": settings.PROJECT_NAME})
        return HttpResponse(page, status=503, headers={"Retry-After": "5"})


def on_event_loop(
    middleware: type[MiddlewareMixin],
    *,
    writes_when: Callable[[HttpRequest], bool] | None = None,
) -> type[MiddlewareMixin]:
    """Django's `middleware`, with its hooks run on the event loop under ASGI.

    Django runs a sync middleware's process_request/process_view/process_response in
    a worker thread on every request; for hooks that only look at headers and cookies
    the thread hop costs more than the hook. Only for middleware whose hooks do no
    I/O: Django raises SynchronousOnlyOperation if one reaches the database anyway.
    A process_response that may write to the database gets `writes_when(request)`:
    it runs in a thread when that is true and is skipped (it would do nothing)
    otherwise. Under WSGI (and Django's test Client) the middleware runs as it
    always does.
    """

    class OnEventLoop(middleware):
        async def __acall__(self, request: HttpRequest) -> HttpResponse:
            response = None
            if hasattr(self, "process_request"):
                response = self.process_request(request)
            response = response or await self.get_response(request)
            if not hasattr(self, "process_response"):
                return response
            if writes_when is None:
                return self.process_response(request, response)
            if writes_when(request):
                return await sync_to_async(self.process_response)(request, response)
            return response

        if hasattr(middleware, "process_view"):

            async def process_view(self, request, view, args, kwargs) -> HttpResponse | None:
                return super().process_view(request, view, args, kwargs)

    OnEventLoop.__name__ = OnEventLoop.__qualname__ = middleware.__name__
    return OnEventLoop


SecurityMiddleware = on_event_loop(security.SecurityMiddleware)
# The session and the messages are lazy: nothing is read before a view asks.
SessionMiddleware = on_event_loop(
    sessions.SessionMiddleware, writes_when=lambda request: request.session.accessed
)
CommonMiddleware = on_event_loop(common.CommonMiddleware)
CsrfViewMiddleware = on_event_loop(csrf.CsrfViewMiddleware)
AuthenticationMiddleware = on_event_loop(auth.AuthenticationMiddleware)  # request.user is lazy
MessageMiddleware = on_event_loop(
    messages.MessageMiddleware,
    writes_when=lambda request: request._messages.used or request._messages.added_new,
)
XFrameOptionsMiddleware = on_event_loop(clickjacking.XFrameOptionsMiddleware)


# settings.MIDDLEWARE names Django's classes (the deployment checks look for those
# names); heroes_site.asgi loads these twins in their place.
EVENT_LOOP_TWINS = {
    f"{twin.__bases__[0].__module__}.{twin.__name__}": f"{__name__}.{twin.__name__}"
    for twin in [
        SecurityMiddleware,
        SessionMiddleware,
        CommonMiddleware,
        CsrfViewMiddleware,
        AuthenticationMiddleware,
        MessageMiddleware,
        XFrameOptionsMiddleware,
    ]
}
