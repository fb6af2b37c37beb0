"""Typed, checked reads of the environment, for settings.py and gunicorn.conf.py.

A value that is not what its variable needs raises ImproperlyConfigured with one line
naming the variable, what it must be and what it was: `manage.py`, the ASGI and WSGI
apps and gunicorn print that line and stop. An unset or empty variable takes its
default. Values that could be secret (SECRET_KEY, DATABASE_URL) are read as text and
never echoed.
"""

import math
import os
from collections.abc import Iterable, Mapping

from django.core.exceptions import ImproperlyConfigured

TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")


class Environment:
    def __init__(self, variables: Mapping[str, str] = os.environ) -> None:
        self.variables = variables

    def given(self, name: str) -> str | None:
        """The variable's value, stripped; None when it is unset or empty."""
        value = self.variables.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        value = self.variables.get(name)
        return default if value is None else value

    def text_list(self, name: str, default: Iterable[str]) -> list[str]:
        """A comma-separated list; empty items are dropped."""
        value = self.variables.get(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def flag(self, name: str, default: bool) -> bool:
        value = self.given(name)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}")

    def whole_number(
        self,
        name: str,
        default: int,
        *,
        minimum: int = 0,
        maximum: int | None = None,
        unit: str = "",
    ) -> int:
        value = self.given(name)
        if value is None:
            return default
        what = f"a whole number{' of ' + unit if unit else ''}"
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        if not value.isascii() or not value.isdigit():
            raise ImproperlyConfigured(f"{name} must be {what} {bounds}, not {value!r}")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise ImproperlyConfigured(f"{name} must be {what} {bounds}, not {value!r}")
        return number

    def seconds(self, name: str, default: float) -> float:
        """A duration in seconds, above 0 (a decimal fraction is fine)."""
        value = self.given(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise ImproperlyConfigured(
                f"{name} must be a number of seconds above 0, such as 3 or 0.5, not {value!r}"
            )
        return number

    def one_of(self, name: str, default: str, choices: Iterable[str]) -> str:
        """One of `choices`, in any letter case; returned as spelled in `choices`."""
        value = self.given(name)
        if value is None:
            return default
        by_key = {choice.lower(): choice for choice in choices}
        if value.lower() not in by_key:
            raise ImproperlyConfigured(
                f"{name} must be one of {', '.join(by_key.values())}, not {value!r}"
            )
        return by_key[value.lower()]
