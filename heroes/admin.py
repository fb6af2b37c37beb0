from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import ForeignKey, QuerySet
from django.forms import Form, ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone

from .forms import HeroDeleteForm, HeroForm
from .models import NEWEST_FIRST, ApiToken, Hero, HeroHistory, HeroNotSaved, HeroQuerySet
from .pagination import EstimatedCountPaginator


class CheckedSelectionMixin(admin.ModelAdmin):
    """Actions that refuse a crafted selection (an id that is no primary key of the
    model: not a UUID, beyond the integer range) like an empty one, with a message;
    Django's own would fail on it with a 500."""

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        try:
            for pk in request.POST.getlist(ACTION_CHECKBOX_NAME):
                self.opts.pk.clean(pk, None)
        except ValidationError:
            self.message_user(request, "Invalid selection: no items were changed.", messages.ERROR)
            return None  # the changelist shows itself again
        return super().response_action(request, queryset)


class ChangedByFilter(admin.SimpleListFilter):
    """Heroes a user has written (created, changed), from the history; offered only to
    users who may see the history (heroes.view_herohistory)."""

    title = "changed by"
    parameter_name = "changed_by"
    shown = 100  # the users offered, by name

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        if not request.user.has_perm("heroes.view_herohistory"):
            return []  # no filter at all
        names = HeroHistory.objects.exclude(username="").order_by("username")
        return [
            (name, name)
            for name in names.values_list("username", flat=True).distinct()[: self.shown]
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Hero]) -> QuerySet[Hero]:
        # Django applies no filter whose lookups are empty: users without the
        # permission never get here, whatever the URL says.
        if self.value() is None:
            return queryset
        written = HeroHistory.objects.filter(username=self.value()).values("hero_uuid")
        return queryset.filter(uuid__in=written)


@admin.register(Hero)
class HeroAdmin(CheckedSelectionMixin, admin.ModelAdmin):
    form = HeroForm
    list_display = ["nickname", "role", "created_at", "updated_at"]
    list_filter = ["role", ChangedByFilter]
    search_fields = ["nickname"]
    readonly_fields = ["uuid", "created_at", "updated_at"]
    # version: hidden, the version the form was opened on (see HeroForm).
    fields = ["uuid", "nickname", "role", "created_at", "updated_at", "version"]
    ordering = NEWEST_FIRST
    # ChangeList counts the filtered rows on every page view, and with
    # show_full_result_count all rows once more: both read the whole table at scale.
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Hero | None:
        hero = super().get_object(request, object_id, from_field)
        if hero is None and request.method == "POST" and from_field is None:
            # Even a hero deleted while its form was open: the form then says so,
            # keeping the input. (super() found no hero, or no valid uuid: None.)
            try:
                return Hero.objects.for_editing(self.opts.pk.to_python(object_id))
            except ValidationError:
                return None
        return hero

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except HeroNotSaved:
            # Another writer got there between validation and save_model (the hero
            # changed or deleted, the nickname taken), and the admin's transaction is
            # rolled back. ModelAdmin has no hook to show the form again after
            # save_model; but that write is committed now, so validating the same
            # POST once more reports it like any other error, with the input kept.
            return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as refusal:
            # From delete_model, with the admin's transaction rolled back: show the
            # confirmation again, now of the hero as it is, with the reason.
            for message in refusal.messages:
                self.message_user(request, message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Hero) -> None:
        # The confirmation page sends the version it showed (delete_confirmation.html);
        # delete() refuses if the hero is no longer at it.
        confirmation = HeroDeleteForm(request.POST, instance=obj)
        if not confirmation.is_valid():
            raise ValidationError(confirmation.errors.as_data())
        obj.delete()

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        """The hero's history (HeroHistory), newest first, changes side by side; for
        users who may see it."""
        if not request.user.has_perm("heroes.view_herohistory"):
            raise PermissionDenied
        try:
            entries = HeroHistory.objects.of(self.opts.pk.to_python(unquote(object_id)))
        except ValidationError:
            entries = HeroHistory.objects.none()  # no hero: Django's view says so
        page = Paginator(entries, 100).get_page(request.GET.get("p"))
        return super().history_view(request, object_id, {**(extra_context or {}), "entries": page})

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Hero], search_term: str
    ) -> tuple[QuerySet[Hero], bool]:
        # The same nickname search as the HTML list and the API.
        return cast(HeroQuerySet, queryset).search(search_term), False


@admin.register(ApiToken)
class ApiTokenAdmin(CheckedSelectionMixin, admin.ModelAdmin):
    """Staff issue, list and revoke API tokens.

    A token acts with all its user's permissions, so only a superuser issues tokens
    for another user, or sees and revokes theirs; other staff deal with their own
    tokens only. The server enforces it: get_queryset (the list, the change and
    delete views, the actions), the add form's choice of user, save_model as the
    last guard, and the users' autocomplete (UserAdmin below).
    """

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        # The others have one user to choose: a plain select, preset, does.
        return self.autocomplete_fields if request.user.is_superuser else []

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        if db_field.name == "user" and not request.user.is_superuser:
            # Another user's id, posted anyway, is "not one of the available choices".
            # (The admin's user is logged in: its pk is never AnonymousUser's None.)
            kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk)  # type: ignore[misc]
            kwargs["empty_label"] = None
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # Most tokens are for oneself: the add form starts with the user who opens it.
        return {"user": request.user.pk, **super().get_changeform_initial_data(request)}

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiToken | None = None
    ) -> tuple[str, ...]:
        # A token's owner and name are set once; afterwards it can only be revoked.
        return (*self.readonly_fields, "user", "name") if obj else tuple(self.readonly_fields)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "user", "name") if obj else ("user", "name")

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Form, change: bool) -> None:
        if obj.user_id != request.user.pk and not request.user.is_superuser:
            raise PermissionDenied  # the form refuses it first; this guards its changes
        if not change:
            obj.raw_token = obj.generate_key()
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        # The raw token exists only in this response: it is never stored or shown again.
        context = {**self.admin_site.each_context(request), "token": obj, "opts": self.opts}
        return TemplateResponse(request, "admin/heroes/apitoken/created.html", context)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)


def is_token_user_autocomplete(request: HttpRequest) -> bool:
    """Whether `request` is the admin's autocomplete for ApiToken.user."""
    source, match = ApiToken._meta, request.resolver_match
    return (
        match is not None
        and match.view_name == "admin:autocomplete"
        and (
            request.GET.get("app_label"),
            request.GET.get("model_name"),
            request.GET.get("field_name"),
        )
        == (source.app_label, source.model_name, "user")
    )


admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class UserAdmin(CheckedSelectionMixin, auth_admin.UserAdmin):
    """Django's user admin, whose autocomplete offers a token's owner to choose: to
    staff who are no superuser (and may view users), only themselves. Its actions
    check their selection, as the other admins' do."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        users, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if is_token_user_autocomplete(request) and not request.user.is_superuser:
            users = users.filter(pk=request.user.pk)
        return users, may_have_duplicates
