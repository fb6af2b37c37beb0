"""The guard of heroes_site.event_loop_middleware: the production ASGI app loads the
twins, their hooks run on the event loop, and Django's classes still have the hooks
the twins were written for. A Django upgrade that changes those hooks fails here,
before it silently costs the speed-up or raises SynchronousOnlyOperation at runtime.
"""

import asyncio
import inspect
from collections.abc import Callable

import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string

from heroes_site.asgi import application
from heroes_site.event_loop_middleware import EVENT_LOOP_TWINS, OnEventLoop

from .helpers import AsgiBrowser

HOOKS = (
    "process_request",
    "process_view",
    "process_template_response",
    "process_response",
    "process_exception",
)

# The hooks of Django's classes when the twins were written (Django 5.2): the twins
# call process_request and process_response on the event loop, and CSRF's
# process_view too; a new hook, or a class calling its hooks its own way (__call__,
# __acall__), needs the twin looked at again.
WRITTEN_FOR = {
    "django.middleware.security.SecurityMiddleware": {"process_request", "process_response"},
    "django.contrib.sessions.middleware.SessionMiddleware": {
        "process_request",
        "process_response",
    },
    "django.middleware.common.CommonMiddleware": {"process_request", "process_response"},
    "django.middleware.csrf.CsrfViewMiddleware": {
        "process_request",
        "process_view",
        "process_response",
    },
    "django.contrib.auth.middleware.AuthenticationMiddleware": {"process_request"},
    "django.contrib.messages.middleware.MessageMiddleware": {
        "process_request",
        "process_response",
    },
    "django.middleware.clickjacking.XFrameOptionsMiddleware": {"process_response"},
}


def loaded_middleware(handler) -> list[object]:
    """The middleware of a Django handler's loaded chain, outermost first."""
    found = []
    step = handler._middleware_chain
    # Django wraps each middleware (functools.wraps: __wrapped__) in its exception
    # handling; the innermost wraps the handler's own _get_response_async.
    while (middleware := step.__wrapped__) != handler._get_response_async:
        found.append(middleware)
        if hasattr(middleware, "get_response"):  # a class's instance
            step = middleware.get_response
        else:  # a function middleware: the next step is its factory's argument
            step = inspect.getclosurevars(middleware).nonlocals["get_response"]
    return found


def test_the_twins_are_written_for_the_hooks_djangos_classes_have():
    assert set(EVENT_LOOP_TWINS) == set(WRITTEN_FOR)
    for django_path, twin_path in EVENT_LOOP_TWINS.items():
        original, twin = import_string(django_path), import_string(twin_path)
        assert twin.__mro__[1:] == (OnEventLoop, *original.__mro__), twin_path
        assert {hook for hook in HOOKS if hasattr(original, hook)} == WRITTEN_FOR[django_path]
        # Django's MiddlewareMixin calls the hooks; the twins replace its async path.
        assert original.__call__ is MiddlewareMixin.__call__, django_path
        assert original.__acall__ is MiddlewareMixin.__acall__, django_path


def test_the_production_asgi_app_loads_the_twins_in_place_of_djangos_classes():
    chain = loaded_middleware(application.handler)
    classes = [type(middleware) for middleware in chain if isinstance(middleware, MiddlewareMixin)]
    twins = [EVENT_LOOP_TWINS[path] for path in settings.MIDDLEWARE if path in EVENT_LOOP_TWINS]
    assert [cls for cls in classes if issubclass(cls, OnEventLoop)] == list(
        map(import_string, twins)
    )
    assert not {import_string(path) for path in EVENT_LOOP_TWINS} & set(classes)
    # A sync-only middleware anywhere would send every request through a thread.
    assert all(iscoroutinefunction(middleware) for middleware in chain)


@pytest.fixture
def hook_calls(monkeypatch) -> list[tuple[str, str, bool]]:
    """(class, hook, on the event loop?) of each hook of Django's classes called."""
    calls = []

    def recording(cls: type, hook: str, method: Callable) -> Callable:
        def record(*args, **kwargs):
            try:
                asyncio.get_running_loop()
                on_loop = True
            except RuntimeError:  # a worker thread: sync_to_async
                on_loop = False
            calls.append((cls.__name__, hook, on_loop))
            return method(*args, **kwargs)

        return record

    for django_path in EVENT_LOOP_TWINS:
        cls = import_string(django_path)
        for hook in WRITTEN_FOR[django_path]:
            monkeypatch.setattr(cls, hook, recording(cls, hook, getattr(cls, hook)))
    return calls


@pytest.mark.django_db(transaction=True)
def test_every_hook_runs_on_the_event_loop_for_a_request_that_uses_no_session(hook_calls):
    status, _, _ = AsgiBrowser().request("GET", "/api/v1/heroes")
    assert status == 200
    expected = [
        (import_string(path).__name__, hook, True)
        for path, hooks in WRITTEN_FOR.items()
        for hook in hooks
    ]
    assert sorted(hook_calls) == sorted(expected)  # each hook once, on the event loop
