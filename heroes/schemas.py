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
    Role,
    normalize_nickname,
    validate_plain_text,
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
# A BeforeValidator runs before the metadata ahead of it: normalised, then checked.
Nickname = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NICKNAME_MAX_LENGTH),
    BeforeValidator(normalized_nickname),
    AfterValidator(storable_text),
    AfterValidator(pydantic_validator(validate_plain_text)),
]
SearchText = Annotated[
    str, StringConstraints(max_length=NICKNAME_MAX_LENGTH), AfterValidator(storable_text)
]


class HeroCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    nickname: Nickname
    role: Role | None = None


class HeroPatch(Schema):
    """Any subset of the fields; `"role": null` clears the role."""

    model_config = ConfigDict(extra="forbid")

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
    database: Literal["ok", "unavailable"] = Field(
        description="ok when the primary database answers and takes writes."
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
