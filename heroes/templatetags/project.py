from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def project_name() -> str:
    # A tag rather than a context processor: 500.html is rendered without context.
    return settings.PROJECT_NAME
