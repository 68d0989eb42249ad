"""Keeping the API key out of every log line and error message.

The key travels as a query parameter, so any text that quotes a URL can leak it:
urllib3's debug lines, the text of requests' exceptions, backoff's retry lines,
jsonschema's validation errors. Our own messages never quote a URL; this module
scrubs what third-party code writes.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from typing_extensions import override

MASK = "***"
MIN_LENGTH = 4
# A run this long of the key's characters is masked wherever it appears: an error
# message may quote the key's first characters, or the URL in any percent-encoding.
FRAGMENT = 6


class Redactor:
    """Replaces secrets (whole, in part, raw or URL-encoded) by a mask in any text."""

    def __init__(self, *secrets: str) -> None:
        """Start with the given secrets."""
        self._spellings: list[str] = []
        self._fragments: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Also mask this secret, in every spelling that can appear in text.

        A secret shorter than MIN_LENGTH (a placeholder such as "x" in a test config)
        is not masked: masking it would garble every word that contains it.
        """
        if len(secret) < MIN_LENGTH:
            return
        spellings = {secret, quote(secret, safe=""), quote_plus(secret)}
        spellings |= {s.lower() for s in spellings} | {s.upper() for s in spellings}
        self._spellings = sorted(set(self._spellings) | spellings, key=len, reverse=True)
        size = min(FRAGMENT, len(secret))
        self._fragments |= {secret[i : i + size] for i in range(len(secret) - size + 1)}
        alternatives = "|".join(re.escape(f) for f in sorted(self._fragments))
        self._pattern = re.compile(f"(?=({alternatives}))")

    def __call__(self, text: str) -> str:
        """Return text with every secret, and every long enough piece of one, masked."""
        for spelling in self._spellings:
            text = text.replace(spelling, MASK)
        if self._pattern is None:
            return text
        text = self._mask_fragments(text)
        if "%" in text or "+" in text:
            # A percent-encoding the spellings above miss (lowercase hex, a partial key):
            # decode, and keep the decoded text only if it hid a piece of a secret.
            for decode in (unquote, unquote_plus):
                decoded = decode(text)
                masked = self._mask_fragments(decoded)
                if masked != decoded:
                    text = masked
        return text

    def _mask_fragments(self, text: str) -> str:
        assert self._pattern is not None
        spans: list[list[int]] = []
        for match in self._pattern.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        for start, end in reversed(spans):
            text = f"{text[:start]}{MASK}{text[end:]}"
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and traceback."""

    def __init__(self, redactor: Redactor) -> None:
        """Wrap a redactor."""
        super().__init__()
        self.redactor = redactor

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        message = record.getMessage()
        clean = self.redactor(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if self.redactor(text) != text:
                record.exc_text = self.redactor(text)
                record.exc_info = None
        return True


_REDACTOR = Redactor()
_FILTER = RedactingFilter(_REDACTOR)


def redact(text: str) -> str:
    """Mask every installed secret in text."""
    return _REDACTOR(text)


def install(secret: str) -> None:
    """Mask the secret in everything logged from now on, by any library."""
    _REDACTOR.add(secret)
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    # A filter on a logger misses records propagated from its children; one on every
    # handler sees them all. urllib3's own loggers are filtered too, for handlers added
    # later (a debug line of urllib3 quotes the full URL, query string included).
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    for name in ("urllib3.connectionpool", "backoff"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
