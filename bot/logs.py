"""Logging for sm-bot: to stderr and `<state_dir>/sm-bot.log`, with secrets masked."""

from __future__ import annotations

import logging
import os
import logging.handlers
import re
from pathlib import Path

# Telegram bot tokens (also inside Bot API URLs) and bearer tokens.
_PATTERNS = [
    re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
]


class RedactSecrets(logging.Filter):
    """Masks known secret values and anything shaped like a token in every record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _PATTERNS[0].sub("***", text)
        return _PATTERNS[1].sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class MalformedRequests(logging.Filter):
    """A malformed HTTP request is the client's fault: aiohttp answers it 400 and
    logs it at ERROR with a traceback; here it becomes one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            detail = " ".join(str(exc.message).split())[:200]
            record.msg, record.args = "%s: %s %s", (record.getMessage(), exc.code, detail)
            record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.WARNING, "WARNING"
        return True


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """The log, and each rotated file, readable by its owner only (0600)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")

    def _open(self):  # type: ignore[no-untyped-def]
        old = os.umask(0o077)
        try:
            stream = super()._open()
        finally:
            os.umask(old)
        os.chmod(self.baseFilename, 0o600)
        return stream


def setup_logging(level: str, state_dir: Path, secrets: list[str]) -> RedactSecrets:
    redactor = RedactSecrets(secrets)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.StreamHandler(), _PrivateRotatingFile(state_dir / "sm-bot.log")]
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(redactor)
        root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequests())
    return redactor
