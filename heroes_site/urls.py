from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from heroes.api import api

from . import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="heroes:list")),
    path("favicon.ico", views.favicon),
    path("heroes/", include("heroes.urls")),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path(f"{settings.API_V1_PREFIX.strip('/')}/", api.urls),
]
