"""What django-axes needs from the site to throttle password guessing (settings.AXES_*):
the client's address, a lock per address besides the lock per username and address,
and the page a locked-out login gets."""

import ipaddress
from datetime import datetime, timedelta
from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

# Set on a request refused because its address, not its username, is locked.
ADDRESS_LOCKED = "heroes_address_locked"


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


class AddressLockingHandler(AxesDatabaseHandler):
    """axes' database handler (attempts in the database), which locks a (username,
    address) pair after AXES_FAILURE_LIMIT failures, also locking a client address
    after AXES_ADDRESS_FAILURE_LIMIT failures within the cool-off, whatever the
    usernames: guessing with ever-new usernames is throttled too, before any password
    is hashed. The limit is higher, as many users may share one address (an office).
    """

    def is_locked(self, request: HttpRequest, credentials: dict | None = None) -> bool:
        return super().is_locked(request, credentials) or self.address_is_locked(request)

    def user_login_failed(
        self, sender: object, credentials: dict, request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        # axes answers a failure with the lockout page when it reaches the pair's
        # limit; so does this one when it reaches the address's.
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is not None and not request.axes_locked_out:  # type: ignore[attr-defined]
            request.axes_locked_out = self.address_is_locked(request)  # type: ignore[attr-defined]

    @staticmethod
    def address_is_locked(request: HttpRequest) -> bool:
        """Whether the request's address has failed AXES_ADDRESS_FAILURE_LIMIT times
        within the cool-off; if so, the request says so (ADDRESS_LOCKED)."""
        failures = AccessAttempt.objects.filter(
            ip_address=request.axes_ip_address,  # type: ignore[attr-defined]  # set by axes
            attempt_time__gte=get_cool_off_threshold(request),
        ).aggregate(failures=Sum("failures_since_start"))["failures"]
        locked = (failures or 0) >= settings.AXES_ADDRESS_FAILURE_LIMIT
        setattr(request, ADDRESS_LOCKED, locked)
        return locked


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
            "address_locked": getattr(request, ADDRESS_LOCKED, False),
            "retry_at": retry_at.replace(second=0, microsecond=0),
            "cool_off_minutes": round(cool_off.total_seconds() / 60),
        },
        status=429,
    )
    response["Retry-After"] = str(round(cool_off.total_seconds()))
    return response
