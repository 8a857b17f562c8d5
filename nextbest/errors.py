"""Errors the services raise; the HTTP layer maps them to status codes in one place."""

from __future__ import annotations

__all__ = ["BadInput", "Conflict", "NotFound", "ServiceError", "Unavailable", "Unprocessable"]


class ServiceError(Exception):
    status = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadInput(ServiceError):
    """The request is malformed; ``field`` names what to fix."""

    status = 400


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Unprocessable(ServiceError):
    """Well-formed, but refers to something it may not (an offer not in the decision...)."""

    status = 422


class Unavailable(ServiceError):
    status = 503
