from django.conf import settings
from django.contrib import admin
from django.urls import path

from heroes.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path(f"{settings.API_V1_PREFIX.strip('/')}/", api.urls),
]
