"""What can go wrong when operating a running system, as types: the one place that says which HTTP status
each one is.

``SystemClient`` raises these; the HTTP app turns them into ``application/problem+json`` through
``http_status`` (never by reading the message), and the CLI prints them as one ``error: ...`` line (they
are ``MmatsError``s). ``extra`` carries structured fields the problem body shows next to ``detail``.
"""

from __future__ import annotations

from typing import Any

from mmats.errors import MmatsError


class ControlError(MmatsError):
    """Base: ``detail`` says what went wrong and where, in words a user can act on."""

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class Refused(ControlError):
    """Well-formed, but it cannot be done as asked (unknown reference, source that does not parse, wrong
    confirmation token, a value the actor system turned down)."""


class InvalidInput(ControlError):
    """A field is missing, malformed or out of range, or fields do not fit together."""


class Unauthorized(ControlError):
    """No usable credentials."""


class Forbidden(ControlError):
    """Credentials given, but not valid."""


class NotFound(ControlError):
    """The thing named does not exist."""


class UnknownStrategy(NotFound):
    pass


class UnknownOrder(NotFound):
    pass


class UnknownSymbol(NotFound):
    pass


class UnknownVersion(NotFound):
    pass


class AlreadyExists(ControlError):
    """Creating something under a name already taken."""


class NotAllowed(ControlError):
    """The system's current state does not allow it (a filled order cannot be canceled, no position to
    close, no audit journal without persistence)."""


class Unavailable(ControlError):
    """The actor system is not running or did not answer in time; retrying later may work."""


class InternalError(ControlError):
    """A bug: the detail says nothing about internals, ``error_id`` points at the server log line."""


HTTP_STATUS: dict[type[ControlError], int] = {
    Refused: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    AlreadyExists: 409,
    NotAllowed: 409,
    InvalidInput: 422,
    InternalError: 500,
    Unavailable: 503,
}


def http_status(exc: ControlError) -> int:
    """The status of the nearest mapped class (``UnknownStrategy`` is a ``NotFound``: 404)."""
    for cls in type(exc).__mro__:
        status = HTTP_STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500
