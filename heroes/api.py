"""The async JSON API under API_V1_PREFIX (django-ninja).

Reads are public. Writes need a bearer token (heroes.ApiToken) or a logged-in
session with a CSRF token, and the matching heroes.*_hero permission. Errors keep the
article's FastAPI shapes: `{"detail": "..."}`, and 422 `{"detail": [{"loc", "msg",
"type"}]}`.

A hero's `ETag` is its version (Hero.version), so HTTP conditional requests (RFC
9110) work: `If-None-Match` on GET, `If-Match` on PATCH and DELETE.
"""

import logging
import re
from collections.abc import Awaitable
from typing import Annotated, Any
from uuid import UUID

import pydantic_core
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.urls import reverse
from django.utils.http import parse_etags
from ninja import Field, Header, NinjaAPI, Router, Schema, Status, renderers
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.pagination import CursorPagination, paginate
from ninja.parser import Parser
from ninja.responses import NinjaJSONEncoder
from ninja.security import HttpBearer
from ninja.security.apikey import APIKeyCookie
from ninja.types import DictStrAny
from ninja.utils import check_csrf

from heroes_site.db import CursorPage, failover
from heroes_site.db.transports import primary_pool
from heroes_site.health import database_report

from .models import (
    NEWEST_FIRST,
    ApiToken,
    Hero,
    HeroChanged,
    HeroHistory,
    NicknameTaken,
    Role,
    permission_flag,
)
from .schemas import (
    HealthCheck,
    HeroCreate,
    HeroPatch,
    HeroRead,
    HistoryEntry,
    Message,
    SearchText,
    StatusMessage,
    ValidationErrors,
)

logger = logging.getLogger(__name__)

HERO_NOT_FOUND = "The hero hasn't been found!"
HERO_DELETED = "The hero has been deleted!"
HERO_CHANGED = "The hero has been changed since you read it."
DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly."
SERVER_BUSY = "The server is busy; try again shortly."


class BearerTokenAuth(HttpBearer):
    """`Authorization: Bearer <token>`, checked against the hashed ApiTokens, with
    whether its user has each of `permissions` found out in the same query."""

    def __init__(self, permissions: tuple[str, ...]) -> None:
        super().__init__()
        self.permissions = permissions

    def __call__(self, request: HttpRequest) -> Awaitable[AbstractBaseUser | None] | None:
        # Parsed here rather than by HttpBearer, which logs unexpected headers (with
        # their credentials) when DEBUG is on.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.authenticate(request, token.strip())

    async def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        return await ApiToken.auser_for(token, self.permissions)


class SessionAuth(APIKeyCookie):
    """A logged-in Django session, with Django's CSRF check.

    Unlike ninja's django_auth, CSRF is checked only once a session user is found, so
    a request with no credentials at all gets 401, not 403.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.COOKIES.get(self.param_name)

    async def authenticate(self, request: HttpRequest, key: str | None) -> AbstractBaseUser | None:
        if not key:
            return None
        user = await request.auser()
        if not user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise HttpError(
                403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken."
            )
        return user


def callers_with(permission: str) -> list[HttpBearer | APIKeyCookie]:
    """An endpoint's auth: a bearer token or a session, of a user who needs
    `permission` (require_permission). A token's check asks only for that permission:
    each one asked for is a subquery of the token check, run on every request."""
    # Bearer first: with the session first, a bearer request would fail the CSRF check.
    return [BearerTokenAuth((permission,)), SessionAuth()]


async def require_permission(request: HttpRequest, permission: str) -> None:
    user: AbstractUser = request.auth  # type: ignore[attr-defined]  # set by ninja's auth
    granted = getattr(user, permission_flag(permission), None)  # a token's user
    if granted is None:  # a session's user
        granted = await user.ahas_perm(permission)
    if not granted:
        raise HttpError(403, f"You do not have the {permission} permission.")


class HeroCursorPagination(CursorPagination):
    """ninja's cursor pagination, answering 422 to a cursor it did not write (one whose
    position is no value of the ordering's field)."""

    class Input(Schema):
        # ninja's, with the bounds its other paginators give page_size (a page of 0 or
        # fewer heroes was answered with one), and descriptions.
        page_size: int | None = Field(
            None, ge=1, description="Heroes a page: 20 by default; over 100 is capped at 100."
        )
        cursor: str | None = Field(
            None, description="The cursor of a `next` or `previous` link; any other is 422."
        )

    async def apaginate_queryset(
        self,
        queryset: QuerySet,
        pagination: CursorPagination.Input,
        request: HttpRequest,
        **params: Any,
    ) -> Any:
        try:
            cursor = self.Cursor.from_encoded_param(pagination.cursor)
            if cursor.p is not None:
                queryset.model._meta.get_field(self._order_attribute).clean(cursor.p, None)
        except (ValueError, ValidationError, DjangoValidationError):
            # pydantic's ValidationError is a ValueError.
            raise ValidationError(
                [{"loc": ["query", "cursor"], "msg": "Invalid cursor.", "type": "value_error"}]
            ) from None
        return await super().apaginate_queryset(queryset, pagination, request, **params)


def etag(hero: Hero) -> str:
    """The hero's entity tag: a strong validator, new with every write (Hero.version)."""
    return f'"{hero.version}"'


STRONG_ETAG = re.compile(r'"([1-9][0-9]{0,9})"')  # one of ours; W/"..." never matches


def versions_in(if_match: str | None) -> list[int] | None:
    """The hero versions an If-Match header accepts; None (any) without one or for `*`.

    If-Match compares strongly, so a weak or foreign tag matches no version.
    """
    tags = parse_etags(if_match or "*")
    if tags == ["*"]:
        return None
    return [int(m[1]) for tag in tags if (m := STRONG_ETAG.fullmatch(tag))]


def is_current(if_none_match: str, hero: Hero) -> bool:
    """Whether If-None-Match names the hero's current ETag (weakly compared) or is `*`."""
    tags = parse_etags(if_none_match)
    return tags == ["*"] or etag(hero) in (tag.removeprefix("W/") for tag in tags)


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="ETags of the hero as read: the write happens only if one is still "
        "current (else 412). `*`: any version.",
    ),
]
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description="ETags already held: 304, without a body, if one is current (or `*`).",
    ),
]


def with_etag(status: int) -> dict:
    """OpenAPI: the answer with this status carries the hero's ETag."""
    header = {
        "description": "The hero's version, for If-Match/If-None-Match.",
        "schema": {"type": "string"},
    }
    return {"responses": {status: {"headers": {"ETag": header}}}}


router = Router(tags=["heroes"])
# The answers an endpoint may give besides its own, from the API's error handlers and
# the site's middleware: a malformed request (400: bad JSON, too many query
# parameters); the database unreachable or every connection busy (503, Retry-After).
ANY = {400: Message, 503: Message}
# ...and one that takes a body: too large (413), not JSON (415).
BODY = {413: Message, 415: Message}
DENIED = {401: Message, 403: Message}
REJECTED = {409: Message, 422: ValidationErrors}
STALE = {412: Message}


@router.get("/health", response={**ANY, 200: HealthCheck, 503: HealthCheck}, tags=["health"])
async def health(request: HttpRequest) -> Status:
    """200 when the primary database answers and has every migration, else 503; each
    read replica's state."""
    report = await database_report()
    return Status(
        200 if report["database"] == "ok" else 503,
        {
            "name": settings.PROJECT_NAME,
            "version": settings.VERSION,
            "description": settings.DESCRIPTION,
            **report,
        },
    )


@router.get("/heroes", response={200: list[HeroRead], 422: ValidationErrors, **ANY})
@paginate(HeroCursorPagination, ordering=NEWEST_FIRST, page_size=20, max_page_size=100)
async def list_heroes(
    request: HttpRequest, role: Role | None = None, search: SearchText | None = None
) -> CursorPage:
    """Heroes, newest first; `search` matches part of the nickname, ignoring case."""
    return Hero.objects.cursor_page(search=search, role=role)


@router.post(
    "/heroes",
    response={201: HeroRead, **DENIED, **REJECTED, **ANY, **BODY},
    auth=callers_with("heroes.add_hero"),
    url_name="create_hero",
    openapi_extra=with_etag(201),
)
async def create_hero(request: HttpRequest, payload: HeroCreate, response: HttpResponse) -> Status:
    await require_permission(request, "heroes.add_hero")
    hero = await Hero.objects.acreate(nickname=payload.nickname, role=payload.role)
    response["Location"] = request.build_absolute_uri(reverse("api:get_hero", args=[hero.uuid]))
    response["ETag"] = etag(hero)
    return Status(201, hero)


@router.get(
    "/heroes/{uuid:hero_id}",
    response={200: HeroRead, 304: None, 404: Message, **ANY},
    url_name="get_hero",
    openapi_extra=with_etag(200),
)
async def get_hero(
    request: HttpRequest, hero_id: UUID, response: HttpResponse, if_none_match: IfNoneMatch = None
) -> Hero | HttpResponse:
    hero = await Hero.objects.acurrent(hero_id)
    if if_none_match is not None and is_current(if_none_match, hero):
        return HttpResponseNotModified(headers={"ETag": etag(hero)})
    response["ETag"] = etag(hero)
    return hero


@router.patch(
    "/heroes/{uuid:hero_id}",
    response={200: HeroRead, **DENIED, 404: Message, **REJECTED, **STALE, **ANY, **BODY},
    auth=callers_with("heroes.change_hero"),
    openapi_extra=with_etag(200),
)
async def patch_hero(
    request: HttpRequest,
    hero_id: UUID,
    payload: HeroPatch,
    response: HttpResponse,
    if_match: IfMatch = None,
) -> Hero:
    await require_permission(request, "heroes.change_hero")
    changes = payload.dict(exclude_unset=True)
    hero = await Hero.objects.achange(hero_id, changes, versions=versions_in(if_match))
    response["ETag"] = etag(hero)
    return hero


@router.delete(
    "/heroes/{uuid:hero_id}",
    response={200: StatusMessage, **DENIED, 404: Message, **STALE, **ANY},
    auth=callers_with("heroes.delete_hero"),
)
async def delete_hero(request: HttpRequest, hero_id: UUID, if_match: IfMatch = None) -> dict:
    await require_permission(request, "heroes.delete_hero")
    await Hero.objects.aremove(hero_id, versions=versions_in(if_match))
    return {"status": True, "message": HERO_DELETED}


@router.get(
    "/heroes/{uuid:hero_id}/history",
    response={200: list[HistoryEntry], **DENIED, 404: Message, 422: ValidationErrors, **ANY},
    auth=callers_with("heroes.view_herohistory"),
    url_name="hero_history",
)
@paginate(HeroCursorPagination, ordering=("-id",), page_size=20, max_page_size=100)
async def hero_history(request: HttpRequest, hero_id: UUID) -> CursorPage:
    """Who wrote the hero, when, through which door and what changed, newest first;
    a deleted hero's history too. Needs the heroes.view_herohistory permission."""
    await require_permission(request, "heroes.view_herohistory")
    return await HeroHistory.objects.acursor_page(hero_id)


class JSONRenderer(renderers.JSONRenderer):
    """pydantic's JSON serializer, as FastAPI's: several times faster than json.dumps
    with an encoder class. Timestamps keep their microseconds (Django's encoder would
    cut them to milliseconds), UTC written "Z"; what pydantic cannot serialize (lazy
    strings...) goes to ninja's encoder."""

    fallback = staticmethod(NinjaJSONEncoder().default)

    def render(self, request: HttpRequest, data: object, *, response_status: int) -> bytes:
        return pydantic_core.to_json(data, fallback=self.fallback)


class NotJSON(ValueError):
    """A request body whose Content-Type is not JSON."""


class JSONParser(Parser):
    """ninja's parser, which reads every body as JSON, refusing one that says it is
    something else (a form, plain text, no Content-Type): 415 (`not_json`)."""

    def parse_body(self, request: HttpRequest) -> DictStrAny:
        kind, _, subtype = (request.content_type or "").lower().partition("/")
        if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
            raise NotJSON("The request body must be JSON: send Content-Type: application/json.")
        return super().parse_body(request)


api = NinjaAPI(
    title=settings.PROJECT_NAME,
    renderer=JSONRenderer(),
    parser=JSONParser(),
    version=settings.VERSION,
    description=settings.DESCRIPTION,
    urls_namespace="api",
)
api.add_router("/", router)


def error(request: HttpRequest, status: int, detail: object) -> HttpResponse:
    return api.create_response(request, {"detail": detail}, status=status)


@api.exception_handler(ValidationError)
def validation_failed(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # FastAPI's shape: ninja puts the body parameter's name in `loc`
    # (["body", "payload", "nickname"]); FastAPI says ["body", "nickname"].
    detail = []
    for item in exc.errors:
        loc = list(item.get("loc", ()))
        if loc[:2] == ["body", "payload"]:
            del loc[1]
        detail.append({"loc": loc, "msg": item.get("msg", ""), "type": item.get("type", "")})
    return error(request, 422, detail)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja's own handler, but for a body it could not parse (400), which it raises
    # from the parser's error: one that is not JSON is 415.
    if isinstance(exc.__cause__, NotJSON):
        return error(request, 415, str(exc.__cause__))
    return error(request, exc.status_code, str(exc))


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    detail = "Authentication required: send `Authorization: Bearer <token>`."
    response = error(request, 401, detail)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(NicknameTaken)
def nickname_taken(request: HttpRequest, exc: NicknameTaken) -> HttpResponse:
    return error(request, 409, exc.messages[0])  # taken, or a look-alike taken


@api.exception_handler(HeroChanged)
def hero_changed(request: HttpRequest, exc: HeroChanged) -> HttpResponse:
    response = error(request, 412, HERO_CHANGED)
    response["ETag"] = etag(exc.current)  # what the client would have to read first
    return response


@api.exception_handler(Hero.DoesNotExist)
def hero_not_found(request: HttpRequest, exc: Hero.DoesNotExist) -> HttpResponse:
    return error(request, 404, HERO_NOT_FOUND)


@api.exception_handler(SuspiciousOperation)
def bad_request(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # What Django answers outside ninja (too many query parameters, ...): a 400, noted
    # on its security logger, here in one line (a client's request, not our fault,
    # so no traceback).
    logging.getLogger(f"django.security.{type(exc).__name__}").warning("%s", exc)
    return error(request, 400, f"Bad request: {exc}")


@api.exception_handler(DatabaseError)
def database_error(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    """503 while the database is out of reach or taking no writes (an outage, a
    failover under way), or every pooled connection is in use (saying busy); any other
    database error is a bug: 500."""
    outage = failover.outage(exc, primary_pool(), logger, request)
    if outage is None:
        return server_error(request, exc)
    if outage == "busy":
        detail, retry_after = SERVER_BUSY, failover.BUSY_RETRY_AFTER
    else:
        detail, retry_after = DATABASE_UNAVAILABLE, failover.RETRY_AFTER
    response = error(request, 503, detail)
    response["Retry-After"] = str(retry_after)
    return response


@api.exception_handler(Exception)
def server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled error on %s %s", request.method, request.path)
    return error(request, 500, "Internal server error.")
