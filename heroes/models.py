"""The hero registry's data and rules, and the API tokens that may change it.

This module is the one home of hero rules: what a valid hero is (fields, validators
and database constraints), how heroes are listed and searched (`HeroQuerySet`), how
concurrent edits are kept from overwriting each other (`Hero.version`) and how a write
that breaks a rule is reported (`HeroNotSaved`). The admin, the HTML views and the
JSON API all go through it.
"""

import datetime
import hashlib
import secrets
import unicodedata
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DatabaseError, IntegrityError, connections, models, router, transaction
from django.db.models import Exists, ExpressionWrapper, F, OuterRef, Q
from django.db.models.functions import Length, Lower, Trim
from django.db.models.lookups import LessThanOrEqual
from django.db.models.signals import post_save, pre_save
from django.urls import reverse
from django.utils import timezone

from heroes_site.db import CursorPage, Delete, Insert, Shape, Transport, Update, Values, arun, run
from heroes_site.db.writers import attributed

from . import lookalikes

if TYPE_CHECKING:
    from django.contrib.auth.models import User

NICKNAME_MAX_LENGTH = 255
NICKNAME_TAKEN_MESSAGE = "A hero with this nickname already exists."
NICKNAME_TAKEN_CODE = "nickname_taken"
NICKNAME_LOOKS_TAKEN_MESSAGE = "A hero with a nickname that looks the same already exists."
NICKNAME_LOOKS_TAKEN_CODE = "nickname_looks_taken"
UNIQUE_NICKNAME_CONSTRAINT = "uq_hrs_heroes_nickname"
# The column of the nicknames' skeleton digests: in the name of its unique constraint
# (PostgreSQL's error) and in SQLite's "UNIQUE constraint failed: hrs_heroes.<column>".
SKELETON_DIGEST_COLUMN = "skeleton_digest"
UNIQUE_SKELETON_CONSTRAINT = "uq_hrs_heroes_skeleton_digest"
HERO_CHANGED_MESSAGE = (
    "This hero was changed by someone else meanwhile, so nothing was written. "
    "Now saved: %(now_saved)s. Submit again to go ahead anyway."
)
HERO_DELETED_MESSAGE = "This hero was deleted by someone else meanwhile, so nothing was written."
# How every list shows heroes (the pages, the API's cursor, the admin), and the order of
# the indexes behind them. uuid breaks ties between heroes created in the same
# microsecond, so the order is total: cursor pagination relies on it.
NEWEST_FIRST = ("-created_at", "-uuid")
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


def invisible_characters(value: str) -> list[str]:
    """The characters of `value` in NON_TEXT_CATEGORIES or that render as nothing
    (Unicode's Default_Ignorable_Code_Point: U+034F, variation selectors, Hangul
    fillers...), in order."""
    ignorable = set(lookalikes.DEFAULT_IGNORABLE.findall(value))
    if value.isprintable() and not ignorable:
        return []  # ordinary text stops here
    return [
        char
        for char in value
        if char in ignorable or unicodedata.category(char) in NON_TEXT_CATEGORIES
    ]


def validate_plain_text(value: str) -> None:
    """Reject control and invisible characters (see invisible_characters)."""
    if found := invisible_characters(value):
        code_points = ", ".join(dict.fromkeys(f"U+{ord(char):04X}" for char in found))
        raise ValidationError(
            "Control and invisible formatting characters are not allowed (found %(found)s).",
            code="non_text_characters",
            params={"found": code_points},
        )


def validate_visible(value: str) -> None:
    """Reject a text in which no character draws anything (only U+2800, U+3164...)."""
    if not any(lookalikes.is_visible(char) for char in value):
        raise ValidationError(
            "A nickname needs at least one visible character.", code="nothing_visible"
        )


def validate_single_script_words(value: str) -> None:
    """Reject words mixing look-alike letters of different scripts ("Zed" with a
    Cyrillic e, U+0435, among Latin letters): see lookalikes.look_alike_mixes."""
    if mixes := lookalikes.look_alike_mixes(value):
        word, scripts = mixes[0]
        raise ValidationError(
            "“%(word)s” mixes letters of different scripts that look alike (%(scripts)s): "
            "write each word in one script.",
            code="mixed_scripts",
            params={"word": word, "scripts": " and ".join(s.title() for s in scripts)},
        )


# What a nickname must be, besides 1..NICKNAME_MAX_LENGTH characters once normalised
# (normalize_nickname), for every door: the model field, the forms, the API's schemas.
NICKNAME_VALIDATORS = [
    validate_storable_text,
    validate_plain_text,
    validate_visible,
    validate_single_script_words,
]


def normalize_nickname(value: str) -> str:
    """The form in which a nickname is validated, compared and stored.

    Unicode NFKC turns compatibility look-alikes into the plain characters (full-width
    U+FF33 into "S", the ligature U+FB01 into "fi"); then surrounding whitespace goes.
    Normalise before checking the length: NFKC can shorten ("e" + U+0301 becomes "é")
    or lengthen (U+FDFA becomes 18 characters) a nickname.
    """
    return unicodedata.normalize("NFKC", value).strip()


def search_key(text: str) -> str:
    """What a search for `text` looks for in nicknames: normalised as nicknames are, so
    a full-width "Super" finds "Superman", and lower-cased; "" filters nothing."""
    return normalize_nickname(text).lower()


class HeroNotSaved(ValidationError):
    """A write of a hero refused for a reason its writer can act on; nothing was written.

    Hero.save(), Hero.delete() and HeroQuerySet's writes raise it when the database
    refuses; Hero.validate_version() raises it before, so that a form reports it with
    its other errors. Either way it is a ValidationError, shown the same way.
    """


class NicknameTaken(HeroNotSaved):
    """Another hero already has this nickname, compared case-insensitively, or (with
    `looks_alike`) one that looks the same: the same skeleton (lookalikes)."""

    def __init__(self, looks_alike: bool = False) -> None:
        error = (
            ValidationError(NICKNAME_LOOKS_TAKEN_MESSAGE, code=NICKNAME_LOOKS_TAKEN_CODE)
            if looks_alike
            else ValidationError(NICKNAME_TAKEN_MESSAGE, code=NICKNAME_TAKEN_CODE)
        )
        super().__init__({"nickname": [error]})


class HeroChanged(HeroNotSaved):
    """Someone else changed the hero since the writer read it: `current` is it now."""

    def __init__(self, current: "Hero") -> None:
        super().__init__(
            HERO_CHANGED_MESSAGE, code="hero_changed", params={"now_saved": current.describe()}
        )
        self.current = current


@contextmanager
def reporting_nickname_taken() -> Iterator[None]:
    """Turn a clash on a unique nickname constraint inside this block (the nickname,
    or its skeleton's digest) into NicknameTaken."""
    try:
        yield
    except IntegrityError as error:
        if SKELETON_DIGEST_COLUMN in str(error):
            raise NicknameTaken(looks_alike=True) from error
        if UNIQUE_NICKNAME_CONSTRAINT in str(error):
            raise NicknameTaken() from error
        raise


class HeroQuerySet(models.QuerySet["Hero"]):
    def newest_first(self) -> "HeroQuerySet":
        return self.order_by(*NEWEST_FIRST)

    def search(self, text: str) -> "HeroQuerySet":
        """Heroes whose nickname contains `text`, ignoring case (also beyond ASCII):
        see search_key."""
        if not (key := search_key(text)):
            return self
        return self.alias(nickname_lower=Lower("nickname")).filter(nickname_lower__contains=key)

    def listing(self, *, search: str | None = None, role: str | None = None) -> "HeroQuerySet":
        """The heroes a list page or the API shows: filtered, newest first."""
        heroes = self
        if search:
            heroes = heroes.search(search)
        if role:
            heroes = heroes.filter(role=role)
        return heroes.newest_first()

    def cursor_page(self, *, search: str | None = None, role: str | None = None) -> CursorPage:
        """listing(search=..., role=...) for ninja's CursorPagination to narrow and read,
        on the transport heroes_site.db chooses (see hero_listing)."""
        # What listing() filters by: the search key (a blank search or role: nothing).
        values = {"search": search_key(search or "") or None, "role": role or None}
        return CursorPage(Hero, hero_listing, values)

    # A queryset's own writes (a shell's, the admin's bulk delete): Django's, in a
    # transaction whose writes the database attributes to the current writer.

    def update(self, **values: object) -> int:
        """Update these heroes, as Hero.written(values) says."""
        with attributed(self.write_db):
            return super().update(**self.model.written(values))

    def delete(self) -> tuple[int, dict[str, int]]:
        with attributed(self.write_db):
            return super().delete()

    def bulk_create(self, objs: Iterable["Hero"], *args: Any, **kwargs: Any) -> list["Hero"]:
        """Django's bulk insert, which writes the heroes as they are (nothing normalised
        or validated: the database's constraints judge), with their skeleton digests,
        so that look-alikes clash there too."""
        heroes = list(objs)
        for hero in heroes:
            hero.skeleton_digest = lookalikes.skeleton_digest(hero.nickname)
        with attributed(self.write_db):
            return super().bulk_create(heroes, *args, **kwargs)

    @property
    def write_db(self) -> str:
        """The database this queryset writes to: its `db` once marked for writing."""
        return self.select_for_update().db

    def at_versions(self, pk: uuid.UUID, versions: Collection[int] | None) -> "HeroQuerySet":
        """The hero `pk` if its stored version is one of `versions` (None: any): a filter,
        so that the version check and the write are one UPDATE or DELETE statement."""
        heroes = self.filter(pk=pk)
        return heroes if versions is None else heroes.filter(version__in=versions)

    # The hero operations, each written once below as a function of a Transport: run
    # here on Django's connection of this thread, by the async methods on the transport
    # heroes_site.db.arun chooses (the API's, on the event loop under make serve).
    # Writes go where the database router says (save() and delete() honour `using`).

    def current(self, pk: uuid.UUID, versions: Collection[int] | None = None) -> "Hero":
        """The hero `pk` as stored now, if its version is one of `versions` (None: any).

        Raises HeroChanged if it is at another version, HeroDeleted if it is gone.
        """
        return run(current_hero, pk, versions, self.db)

    async def acurrent(self, pk: uuid.UUID, versions: Collection[int] | None = None) -> "Hero":
        return await arun(current_hero, pk, versions, self.db)

    def change(
        self, pk: uuid.UUID, changes: dict[str, object], *, versions: Collection[int] | None = None
    ) -> "Hero":
        """Write `changes` to the hero `pk` if it is at one of `versions` (None: any), in
        one conditional UPDATE, and return the hero as now stored.

        Of writers racing with the same version, exactly one writes; the others get
        HeroChanged and write nothing. HeroDeleted if the hero is gone; NicknameTaken.
        """
        return run(change_hero, pk, changes, versions, None)

    async def achange(
        self, pk: uuid.UUID, changes: dict[str, object], *, versions: Collection[int] | None = None
    ) -> "Hero":
        return await arun(change_hero, pk, changes, versions, None)

    def remove(
        self,
        pk: uuid.UUID,
        *,
        versions: Collection[int] | None = None,
        using: str | None = None,
    ) -> tuple[int, dict[str, int]]:
        """Delete the hero `pk` if it is at one of `versions` (None: any), in one
        conditional DELETE; HeroChanged or HeroDeleted, with nothing deleted, if not.
        Returns what QuerySet.delete() returns."""
        deleted = run(remove_hero, pk, versions, using)
        return deleted, {self.model._meta.label: deleted}

    async def aremove(self, pk: uuid.UUID, *, versions: Collection[int] | None = None) -> None:
        await arun(remove_hero, pk, versions, None)

    async def acreate(self, **fields: Any) -> "Hero":
        """QuerySet.acreate (create() and save() insert the same way, on this thread)."""
        hero = self.model(**fields)
        await arun(insert_hero, hero, None)
        return hero

    def for_editing(self, pk: uuid.UUID) -> "Hero":
        """The hero `pk` for an edit form; if it is gone, a stand-in whose validation
        says so (HeroDeleted), so that the form shows it and keeps the user's input."""
        try:
            return self.get(pk=pk)
        except self.model.DoesNotExist:
            gone = self.model(pk=pk)
            gone._state.adding = False  # an edit of a stored hero, never an insert
            return gone


class Role(models.TextChoices):
    MAGE = "mage", "Mage"
    ASSASSIN = "assassin", "Assassin"
    WARRIOR = "warrior", "Warrior"
    PRIEST = "priest", "Priest"
    TANK = "tank", "Tank"


class Hero(models.Model):
    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    nickname = models.CharField(max_length=NICKNAME_MAX_LENGTH, validators=NICKNAME_VALIDATORS)
    # lookalikes.skeleton_digest(nickname): heroes whose nicknames look the same share
    # it, so its unique constraint refuses the second one. Kept by normalize() and
    # written(); NULL only where migration 0007 found an older hero looking the same
    # (it reported them).
    skeleton_digest = models.CharField(  # noqa: DJ001
        max_length=64, null=True, editable=False
    )
    # NULL, not "", is "no role": the API shows it as null.
    role = models.CharField(max_length=16, choices=Role, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Raised by one on every write (HeroQuerySet.update). A write names the version it
    # read and happens only if the row is still at it: the API's If-Match, the
    # version a form was opened on (a hidden field), an instance's own version on save().
    version = models.PositiveIntegerField(default=1)

    objects = HeroQuerySet.as_manager()

    class Meta:
        db_table = "hrs_heroes"
        verbose_name_plural = "heroes"  # not Django's default "heros"
        ordering = list(NEWEST_FIRST)
        constraints = [
            models.UniqueConstraint(
                Lower("nickname"),
                name=UNIQUE_NICKNAME_CONSTRAINT,
                violation_error_message=NICKNAME_TAKEN_MESSAGE,
                violation_error_code=NICKNAME_TAKEN_CODE,
            ),
            models.UniqueConstraint(
                fields=[SKELETON_DIGEST_COLUMN],
                name=UNIQUE_SKELETON_CONSTRAINT,
                violation_error_message=NICKNAME_LOOKS_TAKEN_MESSAGE,
                violation_error_code=NICKNAME_LOOKS_TAKEN_CODE,
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
            models.Index(fields=list(NEWEST_FIRST), name="ix_hrs_heroes_created_at"),
            models.Index(fields=["role", *NEWEST_FIRST], name="ix_hrs_heroes_role_created_at"),
        ]

    def __str__(self) -> str:
        return self.nickname

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert a new hero, or write this one over the stored version it was read at.

        The insert is insert_hero (with the pre_save and post_save signals), the update
        change_hero: one UPDATE of every concrete field but the primary key and
        created_at (written once, on insert), or of `update_fields`, with the version
        check in its WHERE clause; like a queryset update it sends no signal. Nothing
        is written, and
        HeroNotSaved raised, when another hero has the nickname (NicknameTaken, also
        when two writers race past validation), when someone else changed this hero
        since `self.version` (HeroChanged), or deleted it (HeroDeleted: Django would
        silently insert it again).
        """
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        if self._state.adding:
            run(insert_hero, self, using)
            return
        self.normalize()
        only = kwargs.get("update_fields")
        values = {
            field.attname: getattr(self, field.attname)
            for field in self._meta.concrete_fields
            if not field.primary_key
            and field.name not in ("created_at", "updated_at", "version")  # see written()
            and (only is None or field.name in only)
        }
        stored = run(change_hero, self.pk, values, [self.version], using)
        self.updated_at, self.version = stored.updated_at, stored.version

    def get_absolute_url(self) -> str:
        return reverse("heroes:detail", args=[self.pk])

    @staticmethod
    def written(values: dict[str, object]) -> dict[str, object]:
        """What an UPDATE of `values` writes. Every write gives a hero a new version (see
        Hero.version) and refreshes updated_at, whoever writes: save(), the API, a bulk
        update; a new nickname is normalised and comes with its skeleton digest."""
        if isinstance(nickname := values.get("nickname"), str):
            nickname = normalize_nickname(nickname)
            values = {**values, "nickname": nickname}
            values[SKELETON_DIGEST_COLUMN] = lookalikes.skeleton_digest(nickname)
        return {"updated_at": timezone.now(), **values, "version": F("version") + 1}

    @staticmethod
    def stored_at(hero: "Hero | None", versions: Collection[int] | None) -> "Hero":
        """`hero`, as just read from the database (None: not found), if its version is
        one of `versions` (None: any); else HeroChanged, or HeroDeleted if it is gone."""
        if hero is None:
            raise HeroDeleted()
        if versions is not None and hero.version not in versions:
            raise HeroChanged(hero)
        return hero

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict]:
        """Delete this hero if it is still at the stored version it was read at;
        HeroChanged or HeroDeleted, with nothing deleted, if not."""
        using = using or router.db_for_write(type(self), instance=self)
        return Hero.objects.remove(self.pk, versions=[self.version], using=using)

    def normalize(self) -> None:
        """Put the fields in the form in which they are validated and stored."""
        self.nickname = normalize_nickname(self.nickname)
        self.skeleton_digest = lookalikes.skeleton_digest(self.nickname)

    def clean_fields(self, exclude: Collection[str] | None = None) -> None:
        self.normalize()
        super().clean_fields(exclude)

    def validate_constraints(self, exclude: Collection[str] | None = None) -> None:
        # The skeleton digest is no form field, so forms exclude it; it is the
        # nickname's, checked whenever the nickname is.
        if exclude is not None and "nickname" not in exclude:
            exclude = set(exclude) - {SKELETON_DIGEST_COLUMN}
        # Django reports a clash on Lower(nickname) or a custom message as a non-field
        # error; report it on the field the user can fix instead, and a look-alike
        # only when the nickname itself is not taken.
        try:
            super().validate_constraints(exclude)
        except ValidationError as error:
            errors = error.update_error_dict({})
            general = errors.pop(NON_FIELD_ERRORS, [])
            clashes = {NICKNAME_TAKEN_CODE, NICKNAME_LOOKS_TAKEN_CODE}
            taken = [e for e in general if e.code == NICKNAME_TAKEN_CODE] or [
                e for e in general if e.code == NICKNAME_LOOKS_TAKEN_CODE
            ]
            if taken:
                errors.setdefault("nickname", []).extend(taken)
            if rest := [e for e in general if e.code not in clashes]:
                errors[NON_FIELD_ERRORS] = rest
            raise ValidationError(errors) from None

    def validate_version(self) -> None:
        """Raise HeroChanged if the stored hero is no longer at `self.version`, or
        HeroDeleted if it is gone.

        Forms call this with the version they were opened on, so the user hears of it
        with any other error; save() and delete() enforce it anyway, atomically.
        """
        type(self).objects.current(self.pk, [self.version])

    def describe(self) -> str:
        """The values a user edits, for a message: 'nickname “Mystra”, role “Mage”'."""
        shown = []
        for field in self._meta.concrete_fields:
            if field.editable and not field.primary_key and field.name != "version":
                value = getattr(self, field.attname)
                display = dict(field.flatchoices).get(value, value)
                name = field.verbose_name
                shown.append(f"no {name}" if value is None else f"{name} “{display}”")
        return ", ".join(shown)


class HeroDeleted(HeroNotSaved, Hero.DoesNotExist):
    """The hero was deleted meanwhile: an update of it is refused, not turned into an
    insert. Also a Hero.DoesNotExist, so that the API answers 404 as for any missing hero."""

    def __init__(self) -> None:
        super().__init__(HERO_DELETED_MESSAGE, code="hero_deleted")


# The hero operations, each written once (see HeroQuerySet), and the statements they
# run: builders that describe each with the ORM, for heroes_site.db to compile once
# per shape. Reads and writes go to `alias`, a queryset's using(); None: where the
# database router sends them.


async def current_hero(
    db: Transport, pk: uuid.UUID, versions: Collection[int] | None, alias: str | None
) -> Hero:
    """HeroQuerySet.current."""
    found = await db.read(Hero, hero_by_pk, (), {"pk": pk}, alias=alias)
    return Hero.stored_at(found[0] if found else None, versions)


async def insert_hero(db: Transport, hero: Hero, alias: str | None) -> None:
    """Model.save()'s insert of a new hero: each field's value as its pre_save gives it
    (the creation stamps), with the pre_save and post_save signals; NicknameTaken."""
    hero.normalize()
    alias = alias or router.db_for_write(Hero, instance=hero)
    saving = {"sender": Hero, "instance": hero, "raw": False, "using": alias}
    await db.send_signal(pre_save, **saving, update_fields=None)
    values = {
        field.attname: field.pre_save(hero, True) for field in Hero._meta.local_concrete_fields
    }
    with reporting_nickname_taken():
        await db.write(Hero, hero_insert, (), {"values": values}, alias=alias)
    hero._state.adding, hero._state.db = False, alias
    await db.send_signal(post_save, **saving, created=True, update_fields=None)


async def change_hero(
    db: Transport,
    pk: uuid.UUID,
    changes: dict[str, object],
    versions: Collection[int] | None,
    alias: str | None,
) -> Hero:
    """HeroQuerySet.change: one conditional UPDATE, then the hero as stored."""
    if not changes:
        return await current_hero(db, pk, versions, alias or router.db_for_write(Hero))
    update = {"pk": pk, "versions": versions, "values": Hero.written(changes)}
    read = {"pk": pk}
    with reporting_nickname_taken():
        written, found = await db.write_and_read(
            Hero, (hero_update, update), (hero_by_pk, read), alias=alias
        )
    # When nothing was written, stored_at says why: changed or deleted.
    return Hero.stored_at(found[0] if found else None, None if written else versions)


async def remove_hero(
    db: Transport, pk: uuid.UUID, versions: Collection[int] | None, alias: str | None
) -> int:
    """HeroQuerySet.remove: one conditional DELETE; the number of heroes deleted."""
    alias = alias or router.db_for_write(Hero)
    deleted = await db.write(Hero, hero_delete, (), {"pk": pk, "versions": versions}, alias=alias)
    if not deleted:
        await current_hero(db, pk, versions, alias)  # raises: changed or deleted meanwhile
    return deleted


def hero_by_pk(shape: Shape, *, pk: uuid.UUID) -> HeroQuerySet:
    return Hero.objects.filter(pk=pk)


def hero_listing(shape: Shape, *, search: str | None, role: str | None) -> HeroQuerySet:
    """The list, for CursorPage: `search` is already the search key (see cursor_page),
    since only samples pass through listing()."""
    return Hero.objects.listing(search=search, role=role)


def hero_update(
    shape: Shape, *, pk: uuid.UUID, versions: Collection[int] | None, values: Values
) -> Update:
    return Update(Hero.objects.at_versions(pk, versions), values)


def hero_delete(shape: Shape, *, pk: uuid.UUID, versions: Collection[int] | None) -> Delete:
    return Delete(Hero.objects.at_versions(pk, versions))


def hero_insert(shape: Shape, *, values: Values) -> Insert:
    return Insert(Hero, values)


class Via(models.TextChoices):
    """The door a write came through."""

    API = "api", "API"
    PAGES = "pages", "Pages"
    ADMIN = "admin", "Admin"
    OTHER = "other", "Other (a command, the shell)"


class Action(models.TextChoices):
    CREATED = "created", "Created"
    CHANGED = "changed", "Changed"
    DELETED = "deleted", "Deleted"


class AppendOnly(DatabaseError):
    """History entries are never edited or deleted (but by HeroHistoryQuerySet.prune)."""

    def __init__(self) -> None:
        super().__init__("The hero history is append-only; `manage.py prune_history` prunes it.")


class HeroHistoryQuerySet(models.QuerySet["HeroHistory"]):
    def of(self, hero: uuid.UUID) -> "HeroHistoryQuerySet":
        """The entries of the hero `hero`, newest first."""
        return self.filter(hero_uuid=hero).order_by("-id")

    async def acursor_page(self, hero: uuid.UUID) -> CursorPage:
        """The entries of the hero `hero`, for ninja's CursorPagination to narrow and
        read (see hero_entries); HeroDeleted (a Hero.DoesNotExist) if `hero` never was
        a hero: it has neither entries nor (if older than the history) a row."""
        if not await arun(ever_a_hero, hero):
            raise HeroDeleted()
        return CursorPage(HeroHistory, hero_entries, {"hero": hero})

    def update(self, **values: object) -> int:
        raise AppendOnly()

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnly()

    def prune(self, before: datetime.datetime) -> int:
        """Delete the entries recorded before `before`: the one way entries go. On
        PostgreSQL the table's trigger refuses any other DELETE (migration 0008)."""
        with transaction.atomic(using=self.db):
            connection = connections[self.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('heroes.prune_history', 'on', true)")
            deleted, _ = models.QuerySet.delete(self.filter(at__lt=before))
        return deleted


class HeroHistory(models.Model):
    """One write of a hero, as the database recorded it: in the write's own transaction,
    by a trigger on hrs_heroes (migration 0008), whichever door and transport the write
    took, with who wrote it as heroes_site.db.writers told the database.

    `changes` maps each editable field to [before, after]: every field for a create
    (before: null) and a delete (after: null), the changed ones for a change; a write
    that changes none records nothing. `version` is the hero's version after the
    write (for a delete, one more than its last). The user is kept by name too, for
    when the user is deleted; `token` is the API token's name for a token's write.
    """

    hero_uuid = models.UUIDField()
    action = models.CharField(max_length=8, choices=Action)
    changes = models.JSONField()
    version = models.PositiveIntegerField()
    at = models.DateTimeField()
    # No constraint: a deleted user's entries keep their username.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    username = models.CharField(max_length=150, blank=True)
    token = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    via = models.CharField(max_length=8, choices=Via)
    request_id = models.CharField(max_length=128, blank=True)

    objects = HeroHistoryQuerySet.as_manager()

    class Meta:
        db_table = "hrs_hero_history"
        verbose_name = "hero history entry"
        verbose_name_plural = "hero history"
        ordering = ["-id"]
        default_permissions = ("view",)  # entries are written by the database only
        indexes = [
            models.Index(fields=["hero_uuid", "-id"], name="ix_hrs_hero_history_hero"),
            models.Index(fields=["username"], name="ix_hrs_hero_history_username"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.username or 'no user'} at {self.at}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise AppendOnly()

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict]:
        raise AppendOnly()


async def ever_a_hero(db: Transport, hero: uuid.UUID) -> bool:
    """Whether `hero` is or was a hero: it has history entries, or (if it is older than
    the history) a row."""
    if await db.read(HeroHistory, hero_first_entry, (), {"hero": hero}):
        return True
    return bool(await db.read(Hero, hero_by_pk, (), {"pk": hero}))


def hero_entries(shape: Shape, *, hero: uuid.UUID) -> HeroHistoryQuerySet:
    return HeroHistory.objects.of(hero)


def hero_first_entry(shape: Shape, *, hero: uuid.UUID) -> HeroHistoryQuerySet:
    return HeroHistory.objects.of(hero)[:1]


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
    # The key in the clear, on a token the admin has just issued (to show it once);
    # never stored.
    raw_token: str

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
    def issue(cls, user: "User", name: str) -> tuple["ApiToken", str]:
        token = cls(user=user, name=name)
        raw_token = token.generate_key()
        token.save()
        return token, raw_token

    @classmethod
    def lookup(cls, raw_token: str) -> dict[str, Any]:
        """The values `owners` takes to find this raw token's user now."""
        return {
            "key_hash": cls.hash(raw_token),
            "touch_before": timezone.now() - cls.LAST_USED_RESOLUTION,
        }

    @staticmethod
    def owners(
        key_hash: str, touch_before: datetime.datetime, permissions: Sequence[str]
    ) -> models.QuerySet:
        """The active user owning the unrevoked token with this hash (one or no row), with
        `token_id`, `token_needs_touch` (unused since `touch_before`) and, for each of
        `permissions`, whether the user has it (permission_flag), as Django's
        ModelBackend decides (User.objects.with_perm: active superusers have all,
        others their own and their groups').

        One indexed query: it runs on every API write, so the token, the user and the
        permission are checked in one round trip.
        """
        users = get_user_model().objects
        flags = {
            permission_flag(name): Exists(
                users.with_perm(name, backend=PERMISSION_BACKEND).filter(pk=OuterRef("pk"))
            )
            for name in permissions
        }
        return users.filter(
            api_tokens__key_hash=key_hash, api_tokens__revoked_at=None, is_active=True
        ).annotate(
            token_id=F("api_tokens__pk"),
            token_name=F("api_tokens__name"),  # for the history (heroes_site.db.writers)
            token_needs_touch=ExpressionWrapper(
                Q(api_tokens__last_used_at=None) | Q(api_tokens__last_used_at__lt=touch_before),
                output_field=models.BooleanField(),
            ),
            **flags,
        )

    @classmethod
    async def auser_for(
        cls, raw_token: str, permissions: Sequence[str] = ()
    ) -> AbstractBaseUser | None:
        """The active user owning this unrevoked token, or None (see `owners`); its
        last use is recorded at most once per LAST_USED_RESOLUTION."""
        return await arun(token_owner, raw_token, tuple(permissions))


# The backend whose rules grant permissions (AUTHENTICATION_BACKENDS' other one, axes,
# only refuses locked-out logins).
PERMISSION_BACKEND = "django.contrib.auth.backends.ModelBackend"


def permission_flag(permission: str) -> str:
    """The attribute of a user from ApiToken.owners that says whether it has
    `permission` ("heroes.add_hero": `has_heroes_add_hero`)."""
    return "has_" + permission.replace(".", "_")


async def token_owner(
    db: Transport, raw_token: str, permissions: tuple[str, ...]
) -> AbstractBaseUser | None:
    """ApiToken.auser_for."""
    # Prepared: planning its permission subqueries costs ten times more than running them.
    lookup = ApiToken.lookup(raw_token)
    for user in await db.read(get_user_model(), token_owners, permissions, lookup, prepare=True):
        if user.token_needs_touch:
            touch = {"pk": user.token_id, "last_used_at": timezone.now()}
            await db.write(ApiToken, token_touch, (), touch)
        return cast(AbstractBaseUser, user)
    return None


def token_owners(
    permissions: tuple[str, ...], *, key_hash: str, touch_before: datetime.datetime
) -> models.QuerySet:
    return ApiToken.owners(key_hash, touch_before, permissions)


def token_touch(shape: Shape, *, pk: int, last_used_at: datetime.datetime) -> Update:
    return Update(ApiToken.objects.filter(pk=pk), {"last_used_at": last_used_at})
