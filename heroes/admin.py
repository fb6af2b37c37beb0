from django.conf import settings
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone

from .forms import HeroForm
from .models import ApiToken, Hero
from .pagination import EstimatedCountPaginator

admin.site.site_header = settings.PROJECT_NAME
admin.site.site_title = settings.PROJECT_NAME


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

    def get_search_results(self, request, queryset, search_term):
        # The same nickname search as the HTML list and the API.
        if not search_term:
            return queryset, False
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
