"""`manage.py test` (settings.TEST_RUNNER): the suite is pytest's, which Django's own
runner would not find ("Found 0 test(s)... OK"), so it says where the tests are."""

from typing import Any

from django.core.management.base import CommandError


class PytestSuite:
    def __init__(self, **options: Any) -> None:
        pass

    def run_tests(self, test_labels: list[str], **kwargs: Any) -> int:
        raise CommandError(
            "the tests run with pytest: `make test` runs them all (installing first), "
            "`uv run pytest heroes/tests/test_api.py -k health` a part"
        )
