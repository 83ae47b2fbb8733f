"""Errors the engine raises, each with a message a user can act on.

Front ends map them: the API to HTTP status codes, the CLI to one line on
stderr, the bot to a reply.
"""


class SmError(Exception):
    """Base class. `status` is the HTTP status the API answers with."""

    status = 400


class NotFound(SmError):
    status = 404


class Forbidden(SmError):
    status = 403


class Invalid(SmError):
    status = 422


class TooLarge(SmError):
    status = 413


class Conflict(SmError):
    status = 409


class Unavailable(SmError):
    """tmux or another part sm drives is not answering."""

    status = 503
