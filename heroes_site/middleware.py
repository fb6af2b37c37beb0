"""The site's own middleware, all of it able to run on the event loop, so under ASGI a
request crosses it without a hop to a worker thread (Django's middleware gets
event-loop twins for that: heroes_site.event_loop_middleware)."""

import asyncio
import functools
import logging
import re
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.decorators import async_only_middleware
from django.utils.deprecation import MiddlewareMixin

from . import views
from .db import failover
from .db.transports import primary_pool
from .log_formats import REQUEST_ID_KEY, current_request_id

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
    headers, query strings, bodies or cookies, so no credential reaches the logs.
    Every other line logged while the request is served carries its id too
    (heroes_site.log_formats.RequestId reads it)."""

    async def middleware(request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = request.headers.get("X-Request-ID", "")
        if not REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        request.META[REQUEST_ID_KEY] = request_id
        serving = current_request_id.set(request_id)
        try:
            response = await get_response(request)
        finally:
            current_request_id.reset(serving)
        response["X-Request-ID"] = request_id
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        request_logger.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
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
        if request.path.startswith(prefix):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            detail = f"The request body is larger than the limit of {limit} bytes."
            return JsonResponse({"detail": detail}, status=413)
        return views.request_too_large(request)

    return middleware


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A friendly 503 page, not a 500, while the database cannot be reached or takes
    no writes (an outage, a failover under way), or while every pooled connection is
    taken (then saying busy, not unavailable)."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        outage = failover.outage(exception, primary_pool(), logging.getLogger(__name__), request)
        if outage == "busy":
            return views.server_busy(request)
        return None if outage is None else views.database_unavailable(request)


@async_only_middleware
def bounded_logins(get_response: Handler) -> Handler:
    """At most settings.LOGINS_AT_ONCE login attempts (POSTs to the login pages) at a
    time in this process, fewer than its pooled database connections: checking a
    password is slow on purpose, and it and the lockout's queries hold a connection,
    so a flood of logins could otherwise take every connection from the pages and the
    API. The others wait on the event loop (holding no thread or connection), at most
    settings.LOGIN_WAIT seconds, then get the busy page (503, Retry-After)."""
    places: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
        weakref.WeakKeyDictionary()
    )  # per event loop: a semaphore belongs to one (tests run several)

    async def middleware(request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path not in login_paths():
            return await get_response(request)
        loop = asyncio.get_running_loop()
        if (place := places.get(loop)) is None:
            place = places[loop] = asyncio.Semaphore(settings.LOGINS_AT_ONCE)
        try:
            await asyncio.wait_for(place.acquire(), timeout=settings.LOGIN_WAIT)
        except TimeoutError:
            logging.getLogger(__name__).warning("Busy: login attempt turned away")
            return views.server_busy(request)
        try:
            return await get_response(request)
        finally:
            place.release()

    return middleware


@functools.cache
def login_paths() -> frozenset[str]:
    return frozenset({reverse("login"), reverse("admin:login")})
