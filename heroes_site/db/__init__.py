"""The data layer's machinery, for any model: statements described with the ORM and
compiled once (statements.py), run on Django's connections or on the event loop's
pools (transports.py). The models describe their statements and write each operation
once, as an async function of a Transport; see heroes/models.py."""

from .statements import Delete, Insert, Shape, Statement, Update, Values
from .transports import CursorPage, Transport, arun, lifespan, run, serving

__all__ = [
    "CursorPage",
    "Delete",
    "Insert",
    "Shape",
    "Statement",
    "Transport",
    "Update",
    "Values",
    "arun",
    "lifespan",
    "run",
    "serving",
]
