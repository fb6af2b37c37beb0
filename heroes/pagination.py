"""Page-number pagination that stays cheap on a table of a million heroes."""

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.utils.functional import cached_property


class LookaheadPaginator(Paginator):
    """Numbered pages without a COUNT of all rows.

    Page N reads one row more than it shows: that row tells whether page N + 1
    exists. The total is counted only up to `count_limit` rows, so a list can say
    "7 heroes" or "more than 1000 heroes" for the price of reading that many index
    entries at most, and not at all on the last page, which tells the total.
    (Django's `?page=last` still needs the full count.)
    """

    count_limit = 1000

    @cached_property
    def capped_count(self) -> int:
        """The number of rows, counted no further than `count_limit + 1`."""
        return self.object_list[: self.count_limit + 1].count()

    @property
    def count_is_capped(self) -> bool:
        return self.capped_count > self.count_limit

    def validate_number(self, number: int | str) -> int:
        # Paginator's check without the upper bound, which needs the full count:
        # page() finds out whether a page has rows.
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def page(self, number: int | str) -> "LookaheadPage":
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

    def __init__(self, object_list, number: int, paginator: Paginator, *, has_next: bool):
        super().__init__(object_list, number, paginator)
        self.next_exists = has_next

    def has_next(self) -> bool:
        return self.next_exists

    def start_index(self) -> int:
        return self.end_index() - len(self.object_list) + 1 if self.object_list else 0

    def end_index(self) -> int:
        return (self.number - 1) * self.paginator.per_page + len(self.object_list)
