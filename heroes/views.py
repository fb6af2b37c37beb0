"""The server-rendered hero pages: Django's generic views over the rules in models.py."""

from typing import TYPE_CHECKING, Any

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.contrib.messages.views import SuccessMessageMixin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse_lazy
from django.utils.functional import cached_property
from django.views import generic

from .forms import HeroDeleteForm, HeroForm, HeroSearchForm, StoredHeroForm
from .models import Hero, HeroHistory, HeroNotSaved, HeroQuerySet
from .pagination import LookaheadPaginator


class HeroListView(generic.ListView):
    paginate_by = 25
    paginator_class = LookaheadPaginator

    @cached_property
    def search_form(self) -> HeroSearchForm:
        return HeroSearchForm(self.request.GET)

    def get_queryset(self) -> HeroQuerySet:
        if not self.search_form.is_valid():
            return Hero.objects.none()
        filters = self.search_form.cleaned_data
        return Hero.objects.listing(search=filters["q"], role=filters["role"])

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(search_form=self.search_form, **kwargs)


class HeroDetailView(generic.DetailView):
    """A hero; to users who may see it (heroes.view_herohistory), its history too."""

    model = Hero
    history_per_page = 10

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if self.request.user.has_perm("heroes.view_herohistory"):
            entries = HeroHistory.objects.of(self.object.pk)
            pages = Paginator(entries, self.history_per_page)
            history = pages.get_page(self.request.GET.get("history"))
            # The newest entry is the first page's first: no query of its own there.
            newest = history if history.number == 1 else entries[:1]
            context["history"], context["last_change"] = history, next(iter(newest), None)
        return context


if TYPE_CHECKING:
    FormMixinForMypy = generic.edit.FormMixin  # what RefusalShownOnTheForm is mixed into
else:
    # A plain mixin at runtime: a FormMixin here would put SuccessMessageMixin after
    # Django's own form_valid in the views' method order, and no success would be told.
    FormMixinForMypy = object


class RefusalShownOnTheForm(FormMixinForMypy):
    """A write refused after validation (another writer got there first: the hero
    changed or deleted, the nickname taken) is shown like a validation error, with
    the user's input kept."""

    def form_valid(self, form: StoredHeroForm) -> HttpResponse:
        try:
            return super().form_valid(form)
        except HeroNotSaved as refusal:
            form.add_refusal(refusal)
            return self.form_invalid(form)


class HeroFormMixin(RefusalShownOnTheForm, SuccessMessageMixin):
    model = Hero
    form_class = HeroForm


class HeroCreateView(PermissionRequiredMixin, HeroFormMixin, generic.CreateView):
    permission_required = "heroes.add_hero"
    success_message = "Hero “%(nickname)s” was created."


class HeroUpdateView(PermissionRequiredMixin, HeroFormMixin, generic.UpdateView):
    permission_required = "heroes.change_hero"
    success_message = "Hero “%(nickname)s” was saved."

    def get_object(self, queryset: QuerySet[Hero] | None = None) -> Hero:
        if self.request.method == "POST":
            # Even a hero deleted while the form was open: the form then says so.
            return Hero.objects.for_editing(self.kwargs["pk"])
        hero: Hero = super().get_object(queryset)
        return hero


class HeroDeleteView(
    PermissionRequiredMixin, RefusalShownOnTheForm, SuccessMessageMixin, generic.DeleteView
):
    model = Hero
    form_class = HeroDeleteForm
    permission_required = "heroes.delete_hero"
    success_url = reverse_lazy("heroes:list")
    success_message = "Hero “%(nickname)s” was deleted."

    def get_form_kwargs(self) -> dict:
        # The form sets the version the page showed on the hero, which delete() checks.
        return {**super().get_form_kwargs(), "instance": self.object}

    def get_success_message(self, cleaned_data: dict) -> str:
        return self.success_message % {"nickname": self.object.nickname}
