"""Errors the engine raises, each with a message a user can act on.

Each error has a `kind`. The engine knows nothing of HTTP or Telegram: every
door maps a kind to its own words (the API to a status code, the CLI to one
line on stderr, the bot to a reply).
"""

from enum import StrEnum


class ErrorKind(StrEnum):
    INVALID = "invalid"          # the request makes no sense as given; fix it and retry
    NOT_FOUND = "not found"      # no such session, request or lock
    FORBIDDEN = "forbidden"      # the caller may not do this
    TOO_LARGE = "too large"      # over a configured size limit
    CONFLICT = "conflict"        # taken by someone else (a name, a lock)
    UNAVAILABLE = "unavailable"  # tmux or another part sm drives is not answering
    MALFORMED = "malformed"      # the request itself could not be read (not JSON, nested too deeply)
    LIMIT = "limit"              # a configured cap is reached (sessions, children, depth)


class SmError(Exception):
    kind = ErrorKind.INVALID


class NotFound(SmError):
    kind = ErrorKind.NOT_FOUND


class Forbidden(SmError):
    kind = ErrorKind.FORBIDDEN


class Invalid(SmError):
    kind = ErrorKind.INVALID


class TooLarge(SmError):
    kind = ErrorKind.TOO_LARGE


class Conflict(SmError):
    kind = ErrorKind.CONFLICT


class Malformed(SmError):
    kind = ErrorKind.MALFORMED


class LimitReached(SmError):
    kind = ErrorKind.LIMIT


class Unavailable(SmError):
    kind = ErrorKind.UNAVAILABLE


class NeedsConfirmation(Forbidden):
    """Refused until a person confirms, e.g. files that look like secrets (`paths`)."""

    def __init__(self, message: str, paths: list[str] | None = None) -> None:
        super().__init__(message)
        self.paths = paths or []
