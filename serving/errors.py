"""TF Serving status codes, error type and HTTP mapping shared by the gRPC and REST front ends."""

from __future__ import annotations

import grpc

__all__ = ["code_from_number", "code_number", "failed_precondition", "http_status_for", "invalid_argument",
           "not_found", "ServingError"]

# TF Serving's ``ToHTTPStatusCode`` (tensorflow_serving/model_servers/http_rest_api_handler.cc).
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A request failed with a TF Serving status ``code`` and ``message`` (TF Serving's wording).

    Raised by the model manager and the request handlers; the gRPC layer aborts the RPC with it and
    the REST layer answers ``{"error": message}`` with :attr:`http_status`.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """HTTP status TF Serving's REST API uses for this code."""
        return http_status_for(self.code)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def http_status_for(code: grpc.StatusCode) -> int:
    """Map a gRPC/TF status code to the HTTP status TF Serving returns for it."""
    return _HTTP_STATUS.get(code, 500)


def code_number(code: grpc.StatusCode) -> int:
    """The integer TF error code (identical to the gRPC code number) for ``code``."""
    return int(code.value[0])


def code_from_number(number: int) -> grpc.StatusCode:
    """Inverse of :func:`code_number` (unknown numbers map to ``UNKNOWN``)."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


def invalid_argument(message: str) -> ServingError:
    """Shorthand for an INVALID_ARGUMENT error."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    """Shorthand for a NOT_FOUND error."""
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    """Shorthand for a FAILED_PRECONDITION error."""
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)
