"""What django-axes needs from the site to throttle password guessing (settings.AXES_*):
the client's address and the page a locked-out login gets."""

import ipaddress
from datetime import datetime, timedelta

from axes.helpers import get_client_username, get_cool_off
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_address(request: HttpRequest) -> str | None:
    """The socket's peer, never an X-Forwarded-For header.

    Behind a trusted proxy the server (uvicorn, under gunicorn or alone) has already
    put the forwarded address in the ASGI scope, which Django reads into REMOTE_ADDR;
    whom it trusts is its FORWARDED_ALLOW_IPS. django-ipware, axes' default, would
    believe the header from any client, who could then dodge the lock by rotating it.
    """
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return None  # no peer (a test's made-up request) or a proxy's non-address
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped:
        return str(address.ipv4_mapped)
    # One subscriber is usually given a whole /64: its addresses count as one.
    return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """429 with a page saying what happened and when to try again."""
    cool_off = get_cool_off(request)
    # The failure that brought the user here has just restarted the cool-off; the page
    # shows whole minutes, so round up.
    attempted: datetime = request.axes_attempt_time  # type: ignore[attr-defined]  # set by axes
    retry_at = attempted + cool_off + timedelta(minutes=1)
    response = render(
        request,
        "registration/locked_out.html",
        {
            "username": get_client_username(request, credentials) or "",
            "retry_at": retry_at.replace(second=0, microsecond=0),
            "cool_off_minutes": round(cool_off.total_seconds() / 60),
        },
        status=429,
    )
    response["Retry-After"] = str(round(cool_off.total_seconds()))
    return response
