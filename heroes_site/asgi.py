"""ASGI entry point: `gunicorn -k uvicorn_worker.UvicornWorker heroes_site.asgi:application`."""

import os
import sys

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroes_site.settings")

try:
    application = get_asgi_application()
except ImproperlyConfigured as error:
    sys.exit(f"Configuration error: {error}")
