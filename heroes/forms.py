"""Forms of the hero pages and the admin. Validation is the model's (see models.py)."""

from collections.abc import Iterator
from contextlib import contextmanager

from django import forms

from .models import Hero, NicknameTaken, Role, normalize_nickname, validate_storable_text


class NicknameField(forms.CharField):
    """A nickname, normalised the model's way before the form checks its length."""

    def to_python(self, value: object) -> str:
        return normalize_nickname(super().to_python(value))


class HeroForm(forms.ModelForm):
    """Create or edit a hero; used by the HTML pages and by the admin."""

    class Meta:
        model = Hero
        fields = ["nickname", "role"]
        field_classes = {"nickname": NicknameField}
        help_texts = {
            "nickname": "Unique, ignoring letter case. Plain text, at most 255 characters.",
            "role": "Optional.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [("", "No role"), *Role.choices]

    @contextmanager
    def reporting_nickname_taken(self) -> Iterator[None]:
        """Save the hero within this block; if the nickname turns out to be taken,
        the block ends early and the form is invalid, with the error on the field.

        Another writer can take the nickname between validation and save; the
        database constraint catches it, and Hero.save() raises NicknameTaken.
        """
        try:
            yield
        except NicknameTaken as error:
            self.add_error(None, error)  # its "nickname" key puts it on the field


class HeroSearchForm(forms.Form):
    """The list page's filters, read from the query string."""

    q = forms.CharField(
        label="Search nicknames",
        required=False,
        widget=forms.SearchInput,
        # PostgreSQL cannot compare against text it cannot store.
        validators=[validate_storable_text],
    )
    role = forms.ChoiceField(
        label="Role", choices=[("", "All roles"), *Role.choices], required=False
    )
