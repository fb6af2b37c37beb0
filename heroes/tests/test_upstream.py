"""The Django code heroes_site copies or follows, against the installed Django.

heroes_site/upstream/ keeps the text of each Django method that heroes_site copies
(heroes_site.asgi.EventLoopHandler.handle) or whose steps it takes
(heroes_site/db/django_sql.py names them), as of the Django it was written for. A
Django upgrade that changes one fails here and prints the diff: carry the change over,
then store the new text. A copy differs from Django's only on lines marked `# changed`.
"""

import difflib
import inspect
import pydoc
import re
from pathlib import Path
from typing import Any

import django
import pytest

from heroes_site.asgi import EventLoopHandler

UPSTREAM = Path(__file__).resolve().parents[2] / "heroes_site" / "upstream"
KEPT = sorted(UPSTREAM.glob("*.py.txt"))
# Our copies of Django's methods, by the name of the original.
COPIES = {"django.core.handlers.asgi.ASGIHandler.handle": EventLoopHandler.handle}
# What a copy may add to a line of Django's without changing it: type checkers' and
# linters' notes.
NOTES = re.compile(r"\s+# (type: ignore\[[\w-]+\]|noqa: \w+)(?=\s*(#|$))")


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
        pytest.fail(f"Django changed {name}, which heroes_site copies or follows:\n{diff}")


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


@pytest.mark.parametrize("name", COPIES)
def test_a_copy_differs_from_djangos_only_where_marked(name: str):
    djangos = (UPSTREAM / f"{name}.py.txt").read_text().splitlines()
    ours = inspect.getsource(COPIES[name]).splitlines()
    unmarked = [NOTES.sub("", line) for line in ours]
    changed = difflib.SequenceMatcher(None, djangos, unmarked, autojunk=False).get_opcodes()
    for tag, _, _, start, end in changed:
        for line in ours[start:end] if tag != "equal" else []:
            assert "# changed" in line, f"changed without a mark: {line.strip()}"
    assert sum(tag != "equal" for tag, *_ in changed) >= 1  # it is a copy, with changes


def test_every_method_followed_or_copied_is_kept():
    followers = (UPSTREAM.parent / "db" / "django_sql.py").read_text()
    assert {path.name.removesuffix(".py.txt") for path in KEPT} >= set(COPIES)
    for kept in KEPT:
        name = kept.name.removesuffix(".py.txt")
        method = ".".join(name.rsplit(".", 2)[-2:])
        assert name in COPIES or method in followers, method
