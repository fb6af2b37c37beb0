from django import template
from django.conf import settings
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

register = template.Library()


@register.simple_tag
def project_name() -> str:
    # A tag rather than a context processor: error pages are rendered without context.
    return settings.PROJECT_NAME


@register.simple_tag(takes_context=True)
def referring_page(context: template.Context) -> str:
    """The page of this site the request came from (its Referer), or "".

    Checked like a `next` parameter, so a link to another site is never offered.
    """
    request: HttpRequest = context["request"]
    referer = request.headers.get("Referer", "")
    if url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return referer
    return ""
