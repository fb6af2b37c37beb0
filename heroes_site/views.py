"""The site's own pages, which are no hero's: the answers to a refused request, and
the icon at /favicon.ico.

Django's default views render 400.html, 403.html, 404.html and 500.html; these are
the ones it has no default for, or renders in a way that does not suit the site.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.views.decorators.cache import cache_control

from .db import failover


@cache_control(max_age=24 * 60 * 60)
async def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """/favicon.ico, which browsers (and crawlers) ask for whatever the page links: the
    site's icon, static/favicon.svg, as base.html and the admin link it."""
    return HttpResponseRedirect(static("favicon.svg"))


def csrf_failure(request: HttpRequest, reason: str = "") -> TemplateResponse:
    """Django's CSRF failure view, with 403_csrf.html rendered only when it is sent.

    Django's own view renders the page on the spot, inside the CSRF check, and the
    page (base.html) loads the user from the database. That check runs on the event
    loop under ASGI (heroes_site.event_loop_middleware) and in ninja's session auth,
    where a query raises SynchronousOnlyOperation; Django renders a TemplateResponse
    in a thread, and the API, which answers its own JSON 403, never renders it.
    """
    return TemplateResponse(request, "403_csrf.html", status=403)


# The two pages below are rendered without the request: its context processors would
# load the session and the user from the database, which is unreachable (503) or not
# to be waited for on the event loop (413).


def request_too_large(request: HttpRequest) -> HttpResponse:
    """413: a request body over DATA_UPLOAD_MAX_MEMORY_SIZE (heroes_site.middleware)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return HttpResponse(render_to_string("413.html", {"limit": limit}), status=413)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 while the database cannot be reached (heroes_site.middleware)."""
    page = render_to_string("503.html")
    return HttpResponse(page, status=503, headers={"Retry-After": str(failover.RETRY_AFTER)})


def server_busy(request: HttpRequest) -> HttpResponse:
    """503 while no database connection or login place is free (heroes_site.middleware):
    busy, not down, so sooner."""
    page = render_to_string("503.html", {"busy": True})
    return HttpResponse(page, status=503, headers={"Retry-After": str(failover.BUSY_RETRY_AFTER)})
