"""The token API's error answers: ApiError, its JSON rendering, and the api_view wrapper."""

import logging
from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

UNAUTHORIZED_MESSAGE = "Missing, unknown or revoked API key."
INTERNAL_ERROR_MESSAGE = (
    "The token console failed to answer this request; the error is logged. Try again later."
)
# Unexpected errors, with their traceback; the handlers' redaction filter keeps secrets out.
logger = logging.getLogger("tokens.api")


class ApiError(Exception):
    """An API answer other than 200: its status, error code and message (never a secret)."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    def response(self) -> JsonResponse:
        """The JSON error response."""
        response = JsonResponse({"error": self.code, "message": self.message}, status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


def api_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET and HEAD only, ApiError and unexpected errors as JSON, never cached, no CSRF
    (no cookies are used)."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = ApiError(
                405, "method_not_allowed", "Only GET and HEAD are allowed here."
            ).response()
            response["Allow"] = "GET, HEAD"
        else:
            try:
                response = view(request, *args, **kwargs)
            except ApiError as error:
                response = error.response()
            except Exception:
                logger.exception("event=api_error path=%s", request.path)
                response = internal_error()
        response["Cache-Control"] = "no-store"
        return response

    return wrapper


def internal_error() -> JsonResponse:
    """The JSON answer to an unexpected error (500 internal_error)."""
    return ApiError(500, "internal_error", INTERNAL_ERROR_MESSAGE).response()
