import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from django.db.models.functions import Lower

from heroes.models import Hero, NicknameTaken, Role

DEMO_USERNAME = "demo"

# Fifty heroes: nine of each role, five without one.
SAMPLE_HEROES: dict[str | None, list[str]] = {
    Role.MAGE: ["Mystra", "Ember Vale", "Quillon", "Saffra the Grey", "Orrin Starfall",
                "Ilsa Frost", "Thessaly", "Zoë Marlowe", "Kael Dawnspire"],
    Role.ASSASSIN: ["Shadowblade", "Nyx", "Silent Wren", "Vesper Kane", "Ghostmoth",
                    "Rook", "Sable Lin", "Whisper", "Ash Talon"],
    Role.WARRIOR: ["Gorath", "Brunhild", "Ironjaw", "Tamsin Oakheart", "Ragnar Vell",
                   "Ægir", "Kestrel", "Bryn Stormcaller", "Hector Grim"],
    Role.PRIEST: ["Brother Aldous", "Sister Maren", "Élodie", "Father Corwin", "Lumen",
                  "Oriel", "Seraphine", "Abbot Hale", "Mercy Ward"],
    Role.TANK: ["Iron Wall", "Bastion", "Old Boulder", "Gideon Shield", "Tor Anvil",
                "Brick", "Hollis Stone", "Mountain", "Warden Pike"],
    None: ["Nobody", "Wanderer", "The Stranger", "O'Brien", "李小龙"],
}  # fmt: skip


class Command(BaseCommand):
    help = (
        "A first look (DEBUG only): adds about 50 sample heroes and a throwaway staff "
        "login, whose password is printed when it is made. Running it again adds nothing."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "demo adds sample heroes and a login with a printed password: it runs only "
                "with DEBUG=True (development), never in production"
            )
        added = add_sample_heroes()
        total = sum(len(names) for names in SAMPLE_HEROES.values())
        if added:
            self.stdout.write(f"Added {added} sample heroes.")
        else:
            self.stdout.write(f"The {total} sample heroes are there already: none added.")
        password = add_demo_user()
        if password is None:
            self.stdout.write(
                f"The staff login {DEMO_USERNAME!r} is there already (its password was "
                f"printed when it was made; `manage.py changepassword {DEMO_USERNAME}` "
                "sets another)."
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"A throwaway staff login, shown only now: username {DEMO_USERNAME}, "
                f"password {password}"
            )
        )
        self.stdout.write("Log in at /admin/ or /accounts/login/ (make run serves port 8000).")


def add_sample_heroes() -> int:
    """Add the sample heroes that are missing, oldest first; how many were added."""
    there = set(Hero.objects.annotate(key=Lower("nickname")).values_list("key", flat=True))
    added = 0
    for role, nicknames in SAMPLE_HEROES.items():
        for nickname in nicknames:
            if nickname.lower() in there:
                continue
            try:
                Hero(nickname=nickname, role=role).save()
            except NicknameTaken:
                continue  # another run got there first
            added += 1
    return added


def add_demo_user() -> str | None:
    """The demo staff user, with every permission of the heroes app, and its new
    password; None when it exists already."""
    User = get_user_model()
    password = secrets.token_urlsafe(12)
    user, created = User.objects.get_or_create(
        **{User.USERNAME_FIELD: DEMO_USERNAME}, defaults={"is_staff": True}
    )
    if not created:
        return None
    user.set_password(password)
    user.save(update_fields=["password"])
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="heroes"))
    return password
