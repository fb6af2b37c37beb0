"""The server-rendered hero pages: Django's generic views over the rules in models.py."""

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.contrib.messages.views import SuccessMessageMixin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse_lazy
from django.utils.functional import cached_property
from django.views import generic

from .forms import HeroForm, HeroSearchForm
from .models import Hero, HeroQuerySet
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

    def get_context_data(self, **kwargs) -> dict:
        return super().get_context_data(search_form=self.search_form, **kwargs)


class HeroDetailView(generic.DetailView):
    model = Hero


class HeroFormMixin(SuccessMessageMixin):
    """Create or edit a hero with HeroForm, reporting a nickname lost in a race."""

    model = Hero
    form_class = HeroForm

    def form_valid(self, form: HeroForm) -> HttpResponse:
        with form.reporting_nickname_taken():
            return super().form_valid(form)
        return self.form_invalid(form)


class HeroCreateView(PermissionRequiredMixin, HeroFormMixin, generic.CreateView):
    permission_required = "heroes.add_hero"
    success_message = "Hero “%(nickname)s” was created."


class HeroUpdateView(PermissionRequiredMixin, HeroFormMixin, generic.UpdateView):
    permission_required = "heroes.change_hero"
    success_message = "Hero “%(nickname)s” was saved."

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        # Someone may delete the hero while this user edits it: before the form is
        # sent (get_object's 404) or between validation and save (save() raises).
        try:
            return super().post(request, *args, **kwargs)
        except (Http404, Hero.DoesNotExist):
            messages.error(request, "This hero no longer exists; your changes were not saved.")
            return redirect("heroes:list")


class HeroDeleteView(PermissionRequiredMixin, SuccessMessageMixin, generic.DeleteView):
    model = Hero
    permission_required = "heroes.delete_hero"
    success_url = reverse_lazy("heroes:list")
    success_message = "Hero “%(nickname)s” was deleted."

    def get_success_message(self, cleaned_data: dict) -> str:
        return self.success_message % {"nickname": self.object.nickname}


def csrf_failure(request: HttpRequest, reason: str = "") -> TemplateResponse:
    """Django's CSRF failure view, with 403_csrf.html rendered only when it is sent.

    Django's own view renders the page on the spot, inside the CSRF check, and the
    page (base.html) loads the user from the database. That check runs on the event
    loop under ASGI (heroes.middleware's twin) and in ninja's session auth, where a
    query raises SynchronousOnlyOperation; Django renders a TemplateResponse in a
    thread, and the API, which answers its own JSON 403, never renders it.
    """
    return TemplateResponse(request, "403_csrf.html", status=403)
