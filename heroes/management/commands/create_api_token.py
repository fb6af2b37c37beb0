from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from heroes.models import ApiToken


class Command(BaseCommand):
    help = "Issue an API token for a user. The raw token is printed once, as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line", help="What the token is for.")

    def handle(self, *args: object, username: str, name: str, **options: object) -> None:
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        token, raw_token = ApiToken.issue(user, name)
        # On stderr, so that stdout is the token alone (TOKEN=$(... create_api_token ...)),
        # in the success style: stderr's default style is the error red.
        self.stderr.write(
            f"Token {token} issued for {username}. Store it now: it is not shown again.",
            style_func=self.style.SUCCESS,
        )
        self.stdout.write(raw_token)
