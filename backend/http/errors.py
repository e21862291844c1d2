"""Typed errors that handlers raise; one boundary in the app renders them as `{"error": "..."}`."""

from __future__ import annotations


class HTTPError(Exception):
    status = 500
    default_message = "Internal server error"

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.headers = headers or {}
        self.extra = extra or {}
        """Fields the error body carries beside `error` (a send's `validation` block)."""


class BadRequest(HTTPError):
    status = 400
    default_message = "Bad request"


class Unauthorized(HTTPError):
    status = 401
    default_message = "Invalid or expired API key"


class Forbidden(HTTPError):
    status = 403
    default_message = "Insufficient permissions"


class NotFound(HTTPError):
    status = 404
    default_message = "Not found"


class MethodNotAllowed(HTTPError):
    status = 405
    default_message = "Method not allowed"


class Conflict(HTTPError):
    status = 409
    default_message = "Conflict"


class Gone(HTTPError):
    status = 410
    default_message = "Gone"


class PayloadTooLarge(HTTPError):
    status = 413
    default_message = "Request body too large"


class RateLimited(HTTPError):
    status = 429
    default_message = "Rate limit exceeded"


class ServiceUnavailable(HTTPError):
    status = 503
    default_message = "Service unavailable"


class InsufficientStorage(HTTPError):
    status = 507
    default_message = "The server has no storage space left; try again later"
