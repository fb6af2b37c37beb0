from collections.abc import Callable

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from .forms import HeroForm
from .models import ApiToken, Hero
from .pagination import EstimatedCountPaginator

admin.site.site_header = settings.PROJECT_NAME
admin.site.site_title = settings.PROJECT_NAME


class HeroNotSaved(Exception):
    """The hero could not be saved: the form (now invalid) says why, or, without a
    form, the hero was deleted meanwhile."""

    def __init__(self, form: HeroForm | None) -> None:
        super().__init__(form.errors if form else "deleted meanwhile")
        self.form = form


@admin.register(Hero)
class HeroAdmin(admin.ModelAdmin):
    form = HeroForm
    list_display = ["nickname", "role", "created_at", "updated_at"]
    list_filter = ["role"]
    search_fields = ["nickname"]
    readonly_fields = ["uuid", "created_at", "updated_at"]
    fields = ["uuid", "nickname", "role", "created_at", "updated_at"]
    ordering = ["-created_at", "-uuid"]
    # ChangeList counts the filtered rows on every page view, and with
    # show_full_result_count all rows once more: both read the whole table at scale.
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except HeroNotSaved as not_saved:
            # ModelAdmin has no hook to show a form again once save_model has failed,
            # and its transaction is rolled back by now. So the view runs once more
            # and get_form hands it the invalid form: it shows it, errors and all. A
            # hero deleted meanwhile is no longer found: the admin says so itself.
            request.unsaved_hero_form = not_saved.form
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(
        self, request: HttpRequest, obj: Hero | None = None, change: bool = False, **kwargs
    ) -> Callable[..., HeroForm]:
        if unsaved := getattr(request, "unsaved_hero_form", None):
            return lambda *args, **kwargs: unsaved  # instead of a new form from the POST
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Hero, form: HeroForm, change: bool) -> None:
        try:
            with form.reporting_nickname_taken():
                return super().save_model(request, obj, form, change)
        except Hero.DoesNotExist:
            raise HeroNotSaved(None) from None
        raise HeroNotSaved(form)

    def get_search_results(self, request, queryset, search_term):
        # The same nickname search as the HTML list and the API.
        return queryset.search(search_term), False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # A token's owner and name are set once; afterwards it can only be revoked.
        return [*self.readonly_fields, "user", "name"] if obj else self.readonly_fields

    def get_fields(self, request, obj=None):
        return [*self.readonly_fields, "user", "name"] if obj else ["user", "name"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.raw_token = obj.generate_key()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        # The raw token exists only in this response: it is never stored or shown again.
        context = {**self.admin_site.each_context(request), "token": obj, "opts": self.opts}
        return TemplateResponse(request, "admin/heroes/apitoken/created.html", context)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
