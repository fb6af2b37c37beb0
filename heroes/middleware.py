from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import sync_and_async_middleware


@sync_and_async_middleware
def api_errors_as_json(get_response: Callable) -> Callable:
    """Every error under API_V1_PREFIX is JSON `{"detail": ...}`, never an HTML page.

    ninja answers its own errors in JSON; this covers what happens outside it:
    unknown paths (Django's 404), unsupported methods (ninja's empty 405) and errors
    Django turns into its HTML 500 page.
    """
    prefix = settings.API_V1_PREFIX.rstrip("/") + "/"

    def as_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            response.status_code < 400
            or not request.path.startswith(prefix)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        json_response = JsonResponse(
            {"detail": response.reason_phrase}, status=response.status_code
        )
        if "Allow" in response:
            json_response["Allow"] = response["Allow"]
        return json_response

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> Awaitable[HttpResponse]:
            return as_json(request, await get_response(request))

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return as_json(request, get_response(request))

    return middleware
