"""The site's own pages, which are no hero's: the answers to a refused request.

Django's default views render 400.html, 403.html, 404.html and 500.html; these are
the ones it has no default for, or renders in a way that does not suit the site.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse

from .db import failover


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
