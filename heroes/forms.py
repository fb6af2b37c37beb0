"""Forms of the hero pages and the admin. Validation is the model's (see models.py)."""

from typing import Any, cast

from django import forms
from django.http import QueryDict

from .models import (
    Hero,
    HeroChanged,
    HeroNotSaved,
    Role,
    normalize_nickname,
    validate_storable_text,
)


class NicknameField(forms.CharField):
    """A nickname, normalised the model's way before the form checks its length."""

    def to_python(self, value: Any) -> str | None:
        text = super().to_python(value)
        return None if text is None else normalize_nickname(text)


class StoredHeroForm(forms.ModelForm):
    """A form on a hero that carries the version it was opened on, in a hidden field.

    Saving or deleting is refused when the hero is no longer at that version: found
    while validating (Hero.validate_version) or, if another writer got there between
    validation and the write, by the write itself. Either way the refusal is shown
    with add_refusal(). A form sent without a version (not one of ours) writes as
    before, like an API write without If-Match: over the version read on arrival.
    """

    version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # the model's validation (a private hook)
        if not self.instance._state.adding:
            try:
                self.instance.validate_version()
            except HeroNotSaved as refusal:
                self.add_refusal(refusal)

    def add_refusal(self, refusal: HeroNotSaved) -> None:
        """Show why the hero was not saved or deleted, keeping what the user typed."""
        self.add_error(None, refusal)  # NicknameTaken names its field
        if isinstance(refusal, HeroChanged):
            # The message shows the values now saved; sent again, the form knowingly
            # writes over that version.
            data = cast(QueryDict, self.data).copy()  # request.POST, made writable
            data[self.add_prefix("version")] = str(refusal.current.version)
            self.data = data


class HeroForm(StoredHeroForm):
    """Create or edit a hero; used by the HTML pages and by the admin."""

    class Meta:
        model = Hero
        fields = ["nickname", "role", "version"]
        field_classes = {"nickname": NicknameField}
        help_texts = {
            "nickname": "Unique, ignoring letter case. Plain text, at most 255 characters.",
            "role": "Optional.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["role"]).choices = [("", "No role"), *Role.choices]
        if self.instance._state.adding:
            # A new hero starts at the model's first version, whatever is sent.
            self.fields["version"].disabled = True
            self.initial["version"] = self.instance.version


class HeroDeleteForm(StoredHeroForm):
    """The delete confirmation: only the version the page showed."""

    class Meta:
        model = Hero
        fields = ["version"]


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
