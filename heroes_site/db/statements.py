"""Statements described with the ORM, compiled by Django once per shape, bound many times.

A *builder* describes one statement with a model's own methods: given the statement's
shape (what its SQL depends on besides values: an ordering, a window...) and its values
as keywords, it returns a QuerySet (a SELECT), an Update, a Delete or an Insert. Values
of BOUND_TYPES are parameters; anything else among the values (None, an expression, how
many items a list has) is part of the shape too.

`statement()` compiles each shape once, with a distinct sample in place of each value,
and keeps the result (a Statement) for the process; a request puts its own values where
the samples landed among the compiled parameters (Statement.bind), and a SELECT's rows
become instances as Django's own iterator makes them (Statement.instances). Compiling is
Django's work (heroes_site.db.django_sql), and may ask the database for its version: it
runs in a thread that may use Django's connection.
"""

import datetime
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.core.exceptions import EmptyResultSet, ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet

from .django_sql import RowReader, compile_delete, compile_insert, compile_select, compile_update

Values = dict[str, Any]
# A statement's shape: what its compiled SQL depends on besides its values.
Shape = Hashable

# The values a statement takes as parameters; anything else is part of its shape.
BOUND_TYPES = (str, uuid.UUID, datetime.datetime, int)
# Samples: a string survives normalisation, lower-casing and LIKE escaping unchanged.
SAMPLE_NUMBER = 1_987_654_321  # within PostgreSQL's integer range
SAMPLE_TIME = datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
MAX_STATEMENTS = 1024  # per process; the least recently used go first
# How Django passes a value of these types to a database that has no such type
# (SQLite stores uuids and times as text): as a field of the type prepares it.
PREPARED_AS: dict[type, models.Field] = {
    uuid.UUID: models.UUIDField(),
    datetime.datetime: models.DateTimeField(),
}


class Update(NamedTuple):
    queryset: QuerySet
    values: Values


class Delete(NamedTuple):
    queryset: QuerySet


class Insert(NamedTuple):
    model: type[Model]
    values: Values  # each concrete field's attname: its value as saved


Built = QuerySet | Update | Delete | Insert
Builder = Callable[..., Built]


def is_bound(value: object) -> bool:
    return isinstance(value, BOUND_TYPES) and not isinstance(value, bool)


def leaves(value: object) -> Iterator[object]:
    """The values in `value`, through dicts, lists and tuples, in order."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def shape_of(value: object) -> Hashable:
    if isinstance(value, dict):
        return tuple((key, shape_of(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return (list, tuple(shape_of(item) for item in value))
    return type(value) if is_bound(value) else value


def with_samples(value: Any, samples: list[object]) -> Any:
    """`value` with a distinct sample of the same type in place of each bound value."""
    if isinstance(value, dict):
        return {key: with_samples(item, samples) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(with_samples(item, samples) for item in value)
    if not is_bound(value):
        return value
    n = len(samples)
    if isinstance(value, str):
        sample: object = f"zqsample{n}zq"
    elif isinstance(value, uuid.UUID):
        sample = uuid.UUID(int=SAMPLE_NUMBER + n)
    elif isinstance(value, datetime.datetime):
        sample = SAMPLE_TIME + datetime.timedelta(microseconds=n)
    else:
        sample = SAMPLE_NUMBER + n
    samples.append(sample)
    return sample


def prepared(value: object, connection: BaseDatabaseWrapper) -> object:
    """`value` as Django passes it to this connection's database."""
    field = PREPARED_AS.get(type(value))
    return value if field is None else field.get_db_prep_value(value, connection)


class Slot(NamedTuple):
    """Where the `value`th bound value of a request goes among the parameters."""

    param: int
    value: int
    # The parameter's type when Django wrapped the value (psycopg's Int4 for an integer).
    wrap: type | None = None
    # The value goes in as prepared() makes it (a text uuid or time on SQLite).
    prepare: bool = False
    # A LIKE pattern (contains, startswith...) around the sample, and its escaping.
    pattern: str | None = None
    sample: str = ""
    escape: Callable[[str], str] | None = None


@dataclass(frozen=True)
class Statement:
    """One shape of a builder's statement, compiled by Django."""

    sql: str | None  # None: Django knows it matches nothing (EmptyResultSet)
    params: tuple[object, ...] = ()
    slots: tuple[Slot, ...] = ()
    reader: RowReader | None = None  # how a SELECT's rows are read as instances
    writes: bool = False  # an UPDATE, a DELETE or an INSERT

    def bind(self, values: Values) -> list[Any]:
        params = list(self.params)
        if not self.slots:
            return params
        bound = [value for value in leaves(values) if is_bound(value)]
        for slot in self.slots:
            value = bound[slot.value]
            if slot.escape is not None and slot.pattern is not None:
                value = slot.pattern.replace(slot.sample, slot.escape(str(value)))
            elif slot.prepare:
                value = prepared(value, connections[DEFAULT_DB_ALIAS])
            elif slot.wrap is not None:
                value = slot.wrap(value)
            params[slot.param] = value
        return params

    def instances(self, alias: str, rows: Sequence[Sequence[Any]]) -> list[Any]:
        if self.reader is None:
            raise TypeError("only a SELECT's rows are read as instances")
        return list(self.reader.instances(alias, rows))


def compile_statement(build: Builder, shape: Shape, values: Values) -> Statement:
    """Compile `build`'s statement for this shape, with samples for `values`."""
    samples: list[object] = []
    built = build(shape, **with_samples(values, samples))
    connection = connections[DEFAULT_DB_ALIAS]
    reader = None
    try:
        if isinstance(built, QuerySet):
            sql, params, reader = compile_select(built, DEFAULT_DB_ALIAS)
        elif isinstance(built, Update):
            sql, params = compile_update(built.queryset, built.values, DEFAULT_DB_ALIAS)
        elif isinstance(built, Delete):
            sql, params = compile_delete(built.queryset, DEFAULT_DB_ALIAS)
        else:
            sql, params = compile_insert(built.model, built.values, DEFAULT_DB_ALIAS)
    except EmptyResultSet:
        return Statement(sql=None)
    slots = tuple(locate(samples, params, connection))
    writes = not isinstance(built, QuerySet)
    return Statement(sql=sql, params=tuple(params), slots=slots, reader=reader, writes=writes)


def locate(
    samples: list[object], params: Sequence[object], connection: BaseDatabaseWrapper
) -> Iterator[Slot]:
    """The slots of the samples among the compiled parameters; each must be found."""
    escape = connection.ops.prep_for_like_query
    for n, sample in enumerate(samples):
        as_prepared = prepared(sample, connection)
        found = False
        for i, param in enumerate(params):
            if isinstance(param, bool):
                continue
            if param == sample:
                yield Slot(i, n, wrap=type(param) if type(param) is not type(sample) else None)
            elif as_prepared is not sample and param == as_prepared:
                yield Slot(i, n, prepare=True)
            elif isinstance(param, str) and isinstance(sample, str) and sample in param:
                yield Slot(i, n, pattern=param, sample=sample, escape=escape)
            else:
                continue
            found = True
        if not found:
            raise ImproperlyConfigured(f"value {n} of a statement is not one of its parameters")


class Statements:
    """The statements compiled so far, the least recently used dropped first.
    Shared by the process's threads and its event loop."""

    def __init__(self) -> None:
        self._compiled: OrderedDict[Hashable, Statement] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(build: Builder, shape: Shape, values: Values) -> Hashable:
        return (build, shape, shape_of(values))

    def get(self, key: Hashable) -> Statement | None:
        with self._lock:
            statement = self._compiled.get(key)
            if statement is not None:
                self._compiled.move_to_end(key)
            return statement

    def add(self, key: Hashable, statement: Statement) -> Statement:
        with self._lock:
            self._compiled[key] = statement
            if len(self._compiled) > MAX_STATEMENTS:
                self._compiled.popitem(last=False)
        return statement


statements = Statements()
