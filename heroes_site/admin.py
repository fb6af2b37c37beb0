"""The admin site as a whole (each app registers its own models in its admin.py)."""

from django.conf import settings
from django.contrib import admin

admin.site.site_header = settings.PROJECT_NAME
admin.site.site_title = settings.PROJECT_NAME
