from django.conf import settings
from django.contrib import admin

from .forms import HeroForm
from .models import Hero

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
    show_full_result_count = False  # a second COUNT(*) per page view is costly at scale

    def get_search_results(self, request, queryset, search_term):
        # The same nickname search as the HTML list and the API.
        if not search_term:
            return queryset, False
        return queryset.search(search_term), False
