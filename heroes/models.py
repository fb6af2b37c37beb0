"""The hero registry's data and rules, and the API tokens that may change it.

This module is the one home of hero rules: what a valid hero is (fields, validators
and database constraints), how heroes are listed and searched (`HeroQuerySet`) and
how a write that breaks a rule is reported (`Hero.save`). The admin, the HTML views
and the JSON API all go through it.
"""

import datetime
import hashlib
import secrets
import unicodedata
import uuid
from contextlib import nullcontext

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DatabaseError, IntegrityError, connection, models, router, transaction
from django.db.models import Q
from django.db.models.functions import Length, Lower, Trim
from django.db.models.lookups import LessThanOrEqual
from django.urls import reverse
from django.utils import timezone

NICKNAME_MAX_LENGTH = 255
NICKNAME_TAKEN_MESSAGE = "A hero with this nickname already exists."
NICKNAME_TAKEN_CODE = "nickname_taken"
UNIQUE_NICKNAME_CONSTRAINT = "uq_hrs_heroes_nickname"
# Unicode categories plain text may not contain: control characters (Cc: NUL, ESC,
# tab, CR, LF...), invisible format characters (Cf: zero-width spaces and joiners,
# bidirectional overrides, soft hyphens...), and the line and paragraph separators
# (Zl, Zp), which break a line as CR/LF do.
NON_TEXT_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def validate_storable_text(value: str) -> None:
    """Reject text the databases cannot store: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise ValidationError("Null characters are not allowed.", code="null_characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Invalid Unicode text.", code="invalid_text") from None


def non_text_characters(value: str) -> list[str]:
    """The characters of `value` in NON_TEXT_CATEGORIES, in order."""
    if value.isprintable():  # False for every such category: ordinary text stops here
        return []
    return [char for char in value if unicodedata.category(char) in NON_TEXT_CATEGORIES]


def validate_plain_text(value: str) -> None:
    """Reject control and invisible format characters (see NON_TEXT_CATEGORIES)."""
    if found := non_text_characters(value):
        code_points = ", ".join(dict.fromkeys(f"U+{ord(char):04X}" for char in found))
        raise ValidationError(
            "Control and invisible formatting characters are not allowed (found %(found)s).",
            code="non_text_characters",
            params={"found": code_points},
        )


def normalize_nickname(value: str) -> str:
    """The form in which a nickname is validated, compared and stored.

    Unicode NFKC turns compatibility look-alikes into the plain characters (full-width
    U+FF33 into "S", the ligature U+FB01 into "fi"); then surrounding whitespace goes.
    Normalise before checking the length: NFKC can shorten ("e" + U+0301 becomes "é")
    or lengthen (U+FDFA becomes 18 characters) a nickname.
    """
    return unicodedata.normalize("NFKC", value).strip()


class NicknameTaken(ValidationError):
    """Another hero already has this nickname, compared case-insensitively."""

    def __init__(self) -> None:
        super().__init__(
            {"nickname": [ValidationError(NICKNAME_TAKEN_MESSAGE, code=NICKNAME_TAKEN_CODE)]}
        )


class HeroQuerySet(models.QuerySet):
    def newest_first(self) -> "HeroQuerySet":
        # uuid breaks ties between heroes created in the same microsecond, so the
        # order is total (cursor pagination relies on it).
        return self.order_by("-created_at", "-uuid")

    def search(self, text: str) -> "HeroQuerySet":
        """Heroes whose nickname contains `text`, ignoring case (also beyond ASCII).

        The text is normalised as nicknames are, so a full-width "Super" finds
        "Superman"; a blank text filters nothing.
        """
        if not (text := normalize_nickname(text)):
            return self
        return self.alias(nickname_lower=Lower("nickname")).filter(
            nickname_lower__contains=text.lower()
        )

    def listing(self, *, search: str | None = None, role: str | None = None) -> "HeroQuerySet":
        """The heroes a list page or the API shows: filtered, newest first."""
        heroes = self
        if search:
            heroes = heroes.search(search)
        if role:
            heroes = heroes.filter(role=role)
        return heroes.newest_first()

    def change(self, pk: uuid.UUID, **changes: object) -> "Hero":
        """Set some fields of the hero `pk` and save them; Hero.DoesNotExist if it is gone."""
        hero = self.get(pk=pk)
        if changes:
            for field, value in changes.items():
                setattr(hero, field, value)
            hero.save(update_fields=changes)
        return hero

    async def achange(self, pk: uuid.UUID, **changes: object) -> "Hero":
        # One trip to a sync thread for the read and the write, not one each.
        return await sync_to_async(self.change)(pk, **changes)


class Role(models.TextChoices):
    MAGE = "mage", "Mage"
    ASSASSIN = "assassin", "Assassin"
    WARRIOR = "warrior", "Warrior"
    PRIEST = "priest", "Priest"
    TANK = "tank", "Tank"


class Hero(models.Model):
    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    nickname = models.CharField(
        max_length=NICKNAME_MAX_LENGTH, validators=[validate_storable_text, validate_plain_text]
    )
    # NULL, not "", is "no role": the API shows it as null.
    role = models.CharField(max_length=16, choices=Role, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HeroQuerySet.as_manager()

    class Meta:
        db_table = "hrs_heroes"
        verbose_name_plural = "heroes"  # not Django's default "heros"
        ordering = ["-created_at", "-uuid"]
        constraints = [
            models.UniqueConstraint(
                Lower("nickname"),
                name=UNIQUE_NICKNAME_CONSTRAINT,
                violation_error_message=NICKNAME_TAKEN_MESSAGE,
                violation_error_code=NICKNAME_TAKEN_CODE,
            ),
            models.CheckConstraint(
                condition=Q(role__in=Role.values) | Q(role__isnull=True),
                name="ck_hrs_heroes_role",
            ),
            models.CheckConstraint(
                condition=Q(nickname=Trim("nickname"))
                & ~Q(nickname="")
                & Q(LessThanOrEqual(Length("nickname"), NICKNAME_MAX_LENGTH)),
                name="ck_hrs_heroes_nickname",
            ),
        ]
        indexes = [
            models.Index(fields=["-created_at", "-uuid"], name="ix_hrs_heroes_created_at"),
            models.Index(
                fields=["role", "-created_at", "-uuid"], name="ix_hrs_heroes_role_created_at"
            ),
        ]

    def __str__(self) -> str:
        return self.nickname

    def save(self, *args, **kwargs) -> None:
        """Save, with the database as the final judge of nickname uniqueness.

        Raises NicknameTaken when another hero has the nickname (also when two
        writers race past validation), and Hero.DoesNotExist when updating a hero
        that was deleted meanwhile (Django would otherwise silently re-create it).
        """
        self.nickname = normalize_nickname(self.nickname)
        updating = not self._state.adding
        if updating:
            # created_at is written once, on insert; and with update_fields, an
            # update of a row deleted meanwhile fails instead of inserting it again.
            fields = kwargs.get("update_fields")
            fields = ("nickname", "role") if fields is None else fields
            kwargs["update_fields"] = {*fields, "updated_at"} - {"created_at"}
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        # In a transaction (the admin's, a test's), a savepoint keeps it usable after
        # a clash; outside one, the INSERT or UPDATE is its own transaction.
        in_transaction = transaction.get_connection(using).in_atomic_block
        try:
            with transaction.atomic(using=using) if in_transaction else nullcontext():
                super().save(*args, **kwargs)
        except IntegrityError as error:
            if UNIQUE_NICKNAME_CONSTRAINT in str(error):
                raise NicknameTaken() from error
            raise
        except DatabaseError as error:
            # Django says "Save with update_fields did not affect any rows."
            if updating and not type(self).objects.filter(pk=self.pk).exists():
                raise self.DoesNotExist("The hero has been deleted meanwhile.") from error
            raise

    def get_absolute_url(self) -> str:
        return reverse("heroes:detail", args=[self.pk])

    def clean_fields(self, exclude=None) -> None:
        self.nickname = normalize_nickname(self.nickname)
        super().clean_fields(exclude)

    def validate_constraints(self, exclude=None) -> None:
        # The unique constraint is on Lower(nickname), so Django reports a clash as
        # a non-field error; report it on the field the user can fix instead.
        try:
            super().validate_constraints(exclude)
        except ValidationError as error:
            errors = error.update_error_dict({})
            general = errors.pop(NON_FIELD_ERRORS, [])
            taken = [e for e in general if e.code == NICKNAME_TAKEN_CODE]
            if taken:
                errors.setdefault("nickname", []).extend(taken)
            if rest := [e for e in general if e.code != NICKNAME_TAKEN_CODE]:
                errors[NON_FIELD_ERRORS] = rest
            raise ValidationError(errors) from None


class ApiToken(models.Model):
    """A bearer token for the JSON API, belonging to a user.

    Only a SHA-256 hash of the token is stored (tokens are long random strings, so a
    fast hash is enough); the raw token is shown once, when it is issued.
    """

    # last_used_at is written at most this often, so a busy client doesn't turn every
    # authenticated request into a write.
    LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'CI deploys'.")
    prefix = models.CharField(
        max_length=8, editable=False, help_text="The token's first characters, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "hrs_api_tokens"
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw_token: str) -> str:
        return hashlib.sha256(raw_token.encode()).hexdigest()

    def generate_key(self) -> str:
        """Give this (unsaved) token a new random key; return the raw key to show once."""
        raw_token = secrets.token_urlsafe(32)
        self.prefix = raw_token[:8]
        self.key_hash = self.hash(raw_token)
        return raw_token

    @classmethod
    def issue(cls, user: AbstractBaseUser, name: str) -> tuple["ApiToken", str]:
        token = cls(user=user, name=name)
        raw_token = token.generate_key()
        token.save()
        return token, raw_token

    @classmethod
    async def auser_for(cls, raw_token: str) -> AbstractBaseUser | None:
        """The active user owning this unrevoked token, or None: one indexed query.

        Written in SQL because it runs on every API write: building the same join
        with the ORM cost twice as much CPU as running it.
        """
        user, token = get_user_model()._meta, cls._meta
        touch_before = connection.ops.adapt_datetimefield_value(
            timezone.now() - cls.LAST_USED_RESOLUTION
        )
        # Only names from the models' metadata are formatted in; values are parameters.
        sql = (
            f"SELECT u.*, t.{token.pk.column} AS token_id, "  # noqa: S608
            "(t.last_used_at IS NULL OR t.last_used_at < %s) AS token_needs_touch "
            f"FROM {token.db_table} t "
            f"JOIN {user.db_table} u ON u.{user.pk.column} = t.{token.get_field('user').column} "
            "WHERE t.key_hash = %s AND t.revoked_at IS NULL AND u.is_active"
        )
        users = get_user_model().objects.raw(sql, [touch_before, cls.hash(raw_token)])
        async for user in users:
            if user.token_needs_touch:
                await cls.objects.filter(pk=user.token_id).aupdate(last_used_at=timezone.now())
            return user
        return None
