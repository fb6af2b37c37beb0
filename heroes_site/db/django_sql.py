"""The one module of heroes_site.db that reaches into Django's SQL compiler.

Django has no public way to compile a statement without running it, nor to read rows
it did not fetch itself. Each function here does what the Django method it names does
just before running the statement (or, for RowReader, after fetching the rows). Their
upstream text is kept in heroes_site/upstream/, and heroes/tests/test_upstream.py
prints the diff when a Django upgrade changes one of them.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.deletion import Collector
from django.db.models.sql import DeleteQuery, InsertQuery, UpdateQuery

Compiled = tuple[str, Sequence[object]]
# (position in the row, the functions that convert it, the expression they are given)
Converter = tuple[int, tuple[Callable[..., Any], ...], Any]


@dataclass(frozen=True)
class RowReader:
    """How ModelIterable.__iter__ reads a SELECT's rows: each row's model fields into
    an instance (Model.from_db), its annotations into attributes, after the database
    backend's and the fields' converters (SQLite stores uuids and times as text)."""

    model: type[Model]
    attnames: tuple[str, ...]
    start: int
    end: int
    annotations: tuple[tuple[str, int], ...]
    converters: tuple[Converter, ...]

    def instances(self, alias: str, rows: Sequence[Sequence[Any]]) -> Iterator[Model]:
        # Only converters need the connection (and on the event loop each request's
        # context builds its own).
        connection = connections[alias] if self.converters else None
        for row in rows:
            if self.converters:
                row = list(row)
                for position, functions, expression in self.converters:
                    for convert in functions:
                        row[position] = convert(row[position], expression, connection)
            instance = self.model.from_db(alias, self.attnames, row[self.start : self.end])
            for name, position in self.annotations:
                setattr(instance, name, row[position])
            yield instance


def compile_select(queryset: QuerySet, alias: str) -> tuple[str, Sequence[object], RowReader]:
    """The SELECT of `queryset` (as ModelIterable.__iter__ runs it) and how to read its
    rows. Raises EmptyResultSet for a query Django knows matches nothing."""
    compiler: Any = queryset.query.get_compiler(alias)
    sql, params = compiler.as_sql()  # also fills select, klass_info, annotation_col_map
    klass_info = compiler.klass_info
    if klass_info.get("related_klass_infos"):
        raise ImproperlyConfigured("select_related() is not supported by heroes_site.db")
    select = compiler.select
    start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
    converters = compiler.get_converters([column for column, _, _ in select[: compiler.col_count]])
    reader = RowReader(
        model=klass_info["model"],
        attnames=tuple(column.target.attname for column, _, _ in select[start:end]),
        start=start,
        end=end,
        annotations=tuple(compiler.annotation_col_map.items()),
        converters=tuple(
            (position, tuple(functions), expression)
            for position, (functions, expression) in converters.items()
        ),
    )
    return sql, params, reader


def compile_update(queryset: QuerySet, values: dict[str, object], alias: str) -> Compiled:
    """The UPDATE that `queryset.update(**values)` runs (QuerySet.update)."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(values)
    if query.related_updates:
        raise ImproperlyConfigured("an update of inherited fields is several statements")
    query.clear_select_clause()
    return cast(Compiled, query.get_compiler(alias).as_sql())


def compile_delete(queryset: QuerySet, alias: str) -> Compiled:
    """The DELETE that `queryset.delete()` runs when it can delete without collecting
    related rows or sending signals (QuerySet._raw_delete)."""
    if not Collector(alias, origin=queryset).can_fast_delete(queryset):
        raise ImproperlyConfigured("this delete needs Django's collector (cascades, signals)")
    query = queryset.query.clone()
    query.__class__ = DeleteQuery
    return cast(Compiled, query.get_compiler(alias).as_sql())


def compile_insert(model: type[Model], values: dict[str, object], alias: str) -> Compiled:
    """The INSERT of one row with these values of each concrete field, as saved
    (QuerySet._insert with raw=True: the caller ran each field's pre_save)."""
    query = InsertQuery(model)
    query.insert_values(model._meta.local_concrete_fields, [model(**values)], raw=True)
    [(sql, params)] = query.get_compiler(alias).as_sql()
    return sql, params
