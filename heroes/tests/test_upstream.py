"""The Django code heroes_site follows, against the installed Django.

heroes_site/db/upstream/ keeps the text of each Django method whose steps
heroes_site/db/django_sql.py takes (it names them), as of the Django it was written
for. A Django upgrade that changes one fails here and prints the diff: carry the change
over to django_sql.py, then store the new text.
"""

import difflib
import inspect
import pydoc
from pathlib import Path
from typing import Any

import django
import pytest

from heroes_site import db

UPSTREAM = Path(db.__file__).parent / "upstream"
KEPT = sorted(UPSTREAM.glob("*.py.txt"))


def changes(name: str, kept: str, current: str) -> str:
    """What changed from the kept text of `name` to the current one, as a unified diff."""
    return "".join(
        difflib.unified_diff(
            kept.splitlines(keepends=True),
            current.splitlines(keepends=True),
            f"kept: {name}",
            f"Django {django.__version__}: {name}",
        )
    )


@pytest.mark.parametrize("kept", KEPT, ids=[path.name.removesuffix(".py.txt") for path in KEPT])
def test_the_django_code_we_follow_is_unchanged(kept: Path):
    name = kept.name.removesuffix(".py.txt")
    followed: Any = pydoc.locate(name)
    assert followed is not None, f"Django has no {name} any more"
    if diff := changes(name, kept.read_text(), inspect.getsource(followed)):
        pytest.fail(f"Django changed {name} (see heroes_site/db/django_sql.py):\n{diff}")


def test_a_change_shows_as_a_readable_diff():
    kept = "def update(self):\n    query = self.query.chain()\n    return query\n"
    current = "def update(self):\n    query = self.query.chain(sql.UpdateQuery)\n    return query\n"
    diff = changes("QuerySet.update", kept, current).splitlines()
    assert diff[2:] == [
        "@@ -1,3 +1,3 @@",
        " def update(self):",
        "-    query = self.query.chain()",
        "+    query = self.query.chain(sql.UpdateQuery)",
        "     return query",
    ]


def test_every_method_followed_is_kept():
    source = (UPSTREAM.parent / "django_sql.py").read_text()
    assert KEPT
    for kept in KEPT:
        method = kept.name.removesuffix(".py.txt").rsplit(".", 2)[-2:]
        assert ".".join(method) in source, method
