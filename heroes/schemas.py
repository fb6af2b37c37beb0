"""The JSON shapes of the API, in the article's FastAPI service's shapes.

Field rules come from heroes.models (nickname normalisation, lengths, roles, plain and
storable text), so the API rejects with 422 exactly what the model and the database
would refuse.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from ninja import Field, Schema
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StringConstraints

from .models import (
    NICKNAME_MAX_LENGTH,
    NICKNAME_VALIDATORS,
    Role,
    normalize_nickname,
    validate_storable_text,
)


def pydantic_validator(django_validator: Callable[[str], None]) -> Callable[[str], str]:
    """A Django validator as a pydantic one: its message in a 422's `msg`."""

    def validate(value: str) -> str:
        try:
            django_validator(value)
        except DjangoValidationError as error:
            raise ValueError(error.messages[0]) from None
        return value

    return validate


def normalized_nickname(value: object) -> object:
    # Before the string checks, so they see what the model stores; anything but a
    # string goes on to fail them.
    return normalize_nickname(value) if isinstance(value, str) else value


storable_text = pydantic_validator(validate_storable_text)
# A BeforeValidator runs before the metadata ahead of it: normalised, then checked
# by the model field's validators, in their order.
Nickname = Annotated[
    str,
    Field(
        description="Unique, ignoring letter case and look-alikes. Unicode NFKC-normalised "
        "and stripped, then 1 to 255 characters, with something visible; no control or "
        "invisible characters, no look-alike letters of different scripts in one word "
        "(Unicode TR39). A look-alike of a stored nickname is taken (409)."
    ),
    StringConstraints(min_length=1, max_length=NICKNAME_MAX_LENGTH),
    BeforeValidator(normalized_nickname),
    *(AfterValidator(pydantic_validator(validator)) for validator in NICKNAME_VALIDATORS),
]
SearchText = Annotated[
    str, StringConstraints(max_length=NICKNAME_MAX_LENGTH), AfterValidator(storable_text)
]


# The inputs are plain pydantic models too: ninja's Schema validates a model that
# forbids extra fields twice (the second time through a Python getter per field).
# from_attributes as ninja's (and FastAPI's): a body that is no object is a 422 of
# type model_attributes_type.


class HeroCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    nickname: Nickname
    role: Role | None = None


class HeroPatch(BaseModel):
    """Any subset of the fields; `"role": null` clears the role."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    # Optional, but not nullable: a hero always has a nickname. The default is never
    # written (the endpoint writes only the fields sent), so it need not be a nickname.
    nickname: Nickname = Field(default=None, json_schema_extra={"nullable": False})  # type: ignore[assignment]
    role: Role | None = None


class HeroRead(BaseModel):
    # A plain pydantic model read from the Hero's attributes by pydantic's own code:
    # ninja's Schema goes through a Python getter for every field of every hero.
    model_config = ConfigDict(from_attributes=True)

    uuid: UUID
    nickname: str
    role: Role | None
    created_at: datetime
    updated_at: datetime


def none_if_blank(value: object) -> object:
    return value or None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    action: Literal["created", "changed", "deleted"]
    at: datetime = Field(description="When the database wrote it (UTC).")
    version: int = Field(description="The hero's version after the write.")
    user: Annotated[str | None, BeforeValidator(none_if_blank)] = Field(
        validation_alias="username",
        description="Who wrote it: a username; null for a write without a user (a command).",
    )
    token: str | None = Field(description="The name of the API token it was written with.")
    via: Literal["api", "pages", "admin", "other"] = Field(
        description="The door it came through; `other`: a command, the shell."
    )
    request_id: Annotated[str | None, BeforeValidator(none_if_blank)] = Field(
        description="The X-Request-ID of the request that wrote it."
    )
    changes: dict[str, tuple[str | None, str | None]] = Field(
        description="Each field written, [before, after]: every field when created "
        "(before null) or deleted (after null), the changed ones when changed."
    )


class ReplicaHealth(Schema):
    name: str = Field(description="The replica's database alias: replica_1, replica_2, ...")
    status: Literal["ok", "unavailable"]
    lag_seconds: float | None = Field(
        description="How far its copy is behind the primary, in seconds (0 when it has "
        "replayed all it received; null when unknown or unavailable)."
    )


class HealthCheck(Schema):
    name: str
    version: str
    description: str
    database: Literal["ok", "unavailable", "migrations pending"] = Field(
        description="ok when the primary database answers, takes writes and has every "
        "migration of this code."
    )
    primary: str | None = Field(
        description="The primary database's host:port (the one that takes writes, of "
        "DATABASE_URL's hosts); null when it is unavailable, or on SQLite."
    )
    replicas: list[ReplicaHealth] = Field(
        description="The read replicas (DATABASE_REPLICA_URLS); an unavailable replica does "
        "not fail the check: its reads go to the primary."
    )


class StatusMessage(Schema):
    status: bool
    message: str


class Message(Schema):
    detail: str


class ValidationErrorItem(Schema):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrors(Schema):
    detail: list[ValidationErrorItem]
