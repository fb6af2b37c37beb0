import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from heroes.models import Hero

DATA_DIR = Path(__file__).parent / "data"


def load_data(name: str) -> dict:
    """A JSON file of test data from heroes/tests/data/."""
    return json.loads((DATA_DIR / f"{name}.json").read_text())


@pytest.fixture
def heroes(db) -> list[Hero]:
    """The heroes of data/heroes.json, saved oldest first (so newest is last)."""
    return [Hero.objects.create(**hero) for hero in load_data("heroes")["heroes"]]


@pytest.fixture
def staff_user(django_user_model):
    """A staff user who may add, change and delete heroes, but is no superuser."""
    user = django_user_model.objects.create_user("staff", password="staff-pass-123", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="heroes",
            codename__in=["view_hero", "add_hero", "change_hero", "delete_hero"],
        )
    )
    return user


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The production hasher is slow on purpose; tests log users in a lot.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
