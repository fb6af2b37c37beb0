"""Forms of the hero pages and the admin. Validation is the model's (see models.py)."""

from django import forms

from .models import Hero, Role, validate_storable_text


class HeroForm(forms.ModelForm):
    """Create or edit a hero; used by the HTML pages and by the admin."""

    class Meta:
        model = Hero
        fields = ["nickname", "role"]
        help_texts = {
            "nickname": "Unique, ignoring letter case. At most 255 characters.",
            "role": "Optional.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [("", "No role"), *Role.choices]


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
