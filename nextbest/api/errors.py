"""Every error a caller sees, in one shape: {"status_code", "detail", "field"?}."""

from __future__ import annotations

import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from nextbest.errors import ServiceError
from nextbest.logs import mask_numbers

__all__ = ["error_content", "exception_handlers"]


def error_content(status: int, detail: str, field: str | None = None) -> dict[str, Any]:
    """The body of every error response."""
    # An error may quote what was sent; a subscriber's number never leaves whole, even then.
    content: dict[str, Any] = {"status_code": status, "detail": mask_numbers(detail)}
    if field:
        content["field"] = field
    return content


def _body(
    status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    return Response(
        error_content(status, detail, field),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def _service_error(_: Request[Any, Any, Any], exc: ServiceError) -> Response[dict[str, Any]]:
    return _body(exc.status, exc.message, exc.field)


def _validation_error(
    _: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    # Litestar lists msgspec's complaints in `extra`; lift the first into a sentence that names
    # the field, so the person reading the response knows what to fix.
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict) and item.get("message"):
            key = str(item.get("key") or "").removeprefix("$.")
            message = str(item["message"])
            if " - at `$." in message:
                message, _sep, where = message.partition(" - at `$.")
                key = where.rstrip("`")
            if key in ("", "data"):
                # "Object missing required field `channel`": the field is in the message.
                named = re.search(r"field `([^`]+)`", message)
                key = named.group(1) if named else ""
            if key:
                return _body(exc.status_code, f"{key}: {message}", key)
            return _body(exc.status_code, message)
    detail = str(exc.detail)
    if "Expected" in detail or "JSON" in detail or "decode" in detail.lower():
        return _body(exc.status_code, f"request body is not valid JSON: {detail}")
    return _body(exc.status_code, detail)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    # Keep the exception's headers: Retry-After on 429, WWW-Authenticate on 401, Allow on 405.
    return _body(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


def _internal_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return _body(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal error; the request was not completed and nothing was recorded",
    )


exception_handlers: dict[Any, Any] = {
    ServiceError: _service_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    HTTP_500_INTERNAL_SERVER_ERROR: _internal_error,
}
