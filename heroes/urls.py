from django.urls import path

from . import views

app_name = "heroes"

urlpatterns = [
    path("", views.HeroListView.as_view(), name="list"),
    path("new/", views.HeroCreateView.as_view(), name="create"),
    path("<uuid:pk>/", views.HeroDetailView.as_view(), name="detail"),
    path("<uuid:pk>/edit/", views.HeroUpdateView.as_view(), name="update"),
    path("<uuid:pk>/delete/", views.HeroDeleteView.as_view(), name="delete"),
]
