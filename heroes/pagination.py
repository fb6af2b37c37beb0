"""Page-number pagination that stays cheap on a table of a million heroes."""

import json
from typing import Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

# The largest row number a query's OFFSET and LIMIT can name: the databases take them
# as signed 64-bit integers (PostgreSQL: "bigint out of range"; SQLite: OverflowError).
MAX_ROW_NUMBER = 2**63 - 1


class CappedCountPaginator(Paginator):
    """A paginator that counts rows no further than `count_limit + 1`.

    `SELECT COUNT(*) FROM (... LIMIT 1001)` reads at most that many index entries,
    however many rows match; a plain COUNT(*) reads them all.
    """

    count_limit = 1000
    object_list: QuerySet[Any]  # not any sequence: counting and EXPLAIN need a query

    @cached_property
    def capped_count(self) -> int:
        """The number of rows, counted no further than `count_limit + 1`."""
        return self.object_list[: self.count_limit + 1].count()

    @property
    def count_is_capped(self) -> bool:
        return self.capped_count > self.count_limit


class EstimatedCountPaginator(CappedCountPaginator):
    """Django's Paginator, with PostgreSQL's estimate where the exact count is costly.

    For the admin's changelist, which needs a total for its page links and its
    "Select all N" (and, unlike the HTML list, can't be taught to do without one
    short of rewriting ChangeList). Up to `count_limit` rows the count is exact;
    beyond, it is the planner's row estimate for the query (EXPLAIN: no rows read,
    kept current by autovacuum's ANALYZE), so a page view costs the same on a
    million heroes as on a thousand, filtered or not. A time-boxed exact count
    (statement_timeout) would still cost its timeout on every view.

    Other databases (SQLite in development) have no estimate to offer and get
    Django's exact count.
    """

    @cached_property
    def count(self) -> int:
        if not self.count_is_capped:
            return self.capped_count
        if self.count_is_estimated:
            plan = json.loads(self.object_list.explain(format="json"))
            # Beyond the limit by the capped count, whatever the planner guesses.
            return max(int(plan[0]["Plan"]["Plan Rows"]), self.capped_count)
        return super().count

    @property
    def count_is_estimated(self) -> bool:
        return self.count_is_capped and connections[self.object_list.db].vendor == "postgresql"


class LookaheadPaginator(CappedCountPaginator):
    """Numbered pages without a COUNT of all rows.

    Page N reads one row more than it shows: that row tells whether page N + 1
    exists. The total is counted only up to `count_limit` rows, so a list can say
    "7 heroes" or "more than 1000 heroes" for the price of reading that many index
    entries at most, and not at all on the last page, which tells the total.
    (Django's `?page=last` still needs the full count.)
    """

    def validate_number(self, number: int | float | str) -> int:
        # Paginator's check without the upper bound, which needs the full count:
        # page() finds out whether a page has rows.
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        if number * self.per_page + 1 > MAX_ROW_NUMBER:  # page() reads one row more
            raise EmptyPage(self.error_messages["no_results"])
        return number

    def page(self, number: int | float | str) -> "LookaheadPage":
        number = self.validate_number(number)
        offset = (number - 1) * self.per_page
        rows = list(self.object_list[offset : offset + self.per_page + 1])
        if not rows and number > 1:
            raise EmptyPage(self.error_messages["no_results"])
        has_next = len(rows) > self.per_page
        if not has_next:
            # The last page tells the total: no need to count.
            self.capped_count = min(offset + len(rows), self.count_limit + 1)
        return LookaheadPage(rows[: self.per_page], number, self, has_next=has_next)


class LookaheadPage(Page):
    """A page that knows whether a next one exists without knowing the total."""

    def __init__(
        self, object_list: list[Any], number: int, paginator: Paginator, *, has_next: bool
    ) -> None:
        super().__init__(object_list, number, paginator)
        self.next_exists = has_next

    def has_next(self) -> bool:
        return self.next_exists

    def start_index(self) -> int:
        return self.end_index() - len(self.object_list) + 1 if self.object_list else 0

    def end_index(self) -> int:
        return (self.number - 1) * self.paginator.per_page + len(self.object_list)
