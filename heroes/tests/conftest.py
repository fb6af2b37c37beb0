import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission

from heroes.models import ApiToken, Hero

DATA_DIR = Path(__file__).parent / "data"
REPO_ROOT = Path(__file__).resolve().parents[2]
HERO_PERMISSIONS = ["view_hero", "add_hero", "change_hero", "delete_hero"]


def load_data(name: str) -> dict:
    """A JSON file of test data from heroes/tests/data/."""
    return json.loads((DATA_DIR / f"{name}.json").read_text())


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py in a fresh process; variables set here win over `.env`."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_user(username: str, codenames: list[str], **fields) -> AbstractUser:
    """A user with a password equal to its username + '-pass-123' and these hero permissions."""
    user = get_user_model().objects.create_user(username, password=f"{username}-pass-123", **fields)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="heroes", codename__in=codenames)
    )
    return user


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The production hasher is slow on purpose; tests log users in a lot.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def heroes(db) -> list[Hero]:
    """The heroes of data/heroes.json, saved oldest first (so newest is last)."""
    return [Hero.objects.create(**hero) for hero in load_data("heroes")["heroes"]]


@pytest.fixture
def staff_user(db) -> AbstractUser:
    """A staff user who may add, change and delete heroes, but is no superuser."""
    return make_user("staff", HERO_PERMISSIONS, is_staff=True)


@pytest.fixture
def writer(db) -> AbstractUser:
    """A user who may add, change and delete heroes (not staff)."""
    return make_user("writer", HERO_PERMISSIONS)


@pytest.fixture
def reader(db) -> AbstractUser:
    """A user with no hero permissions."""
    return make_user("reader", [])


@pytest.fixture
def writer_token(writer) -> str:
    return ApiToken.issue(writer, "tests")[1]


@pytest.fixture
def reader_token(reader) -> str:
    return ApiToken.issue(reader, "tests")[1]
