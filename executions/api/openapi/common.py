"""What the OpenAPI declarations of every resource share: the error answers every operation
may give, and the parameters of cursor pages."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from ..pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PAGE_SIZE_PARAMETER
from ..schemas import ErrorResponse, HTTPValidationError

# Error answers of every operation, whatever it does.
COMMON_ERROR_RESPONSES = {
    401: OpenApiResponse(ErrorResponse, description="Not authenticated"),
    406: OpenApiResponse(ErrorResponse, description="The client does not accept JSON"),
    # API_THROTTLE_USER / API_THROTTLE_ANON (a request refused with 401 counts too).
    429: OpenApiResponse(ErrorResponse, description="Too many requests; retry after Retry-After seconds"),
    503: OpenApiResponse(
        ErrorResponse, description="The database is unavailable; retry after Retry-After seconds"
    ),
}
# The contract's PATCH: not authenticated, or not permitted.
AUTH_ERROR_RESPONSES = {
    401: COMMON_ERROR_RESPONSES[401],
    403: OpenApiResponse(ErrorResponse, description="Permission denied"),
}
# Unsafe methods: a session-authenticated request without its CSRF token is refused.
CSRF_ERROR_RESPONSE = {403: OpenApiResponse(ErrorResponse, description="Permission denied (CSRF)")}
BODY_ERROR_RESPONSES = {
    413: OpenApiResponse(ErrorResponse, description="Request body too large"),
    415: OpenApiResponse(ErrorResponse, description="The body is not application/json"),
    422: OpenApiResponse(HTTPValidationError, description="Validation Error"),
}


def page_size_parameter(items: str) -> OpenApiParameter:
    """`page_size`, as the list and the change feed both take it."""
    return OpenApiParameter(
        PAGE_SIZE_PARAMETER,
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
        OpenApiParameter.QUERY,
        description=f"{items} per page, at most {MAX_PAGE_SIZE}",
    )
