"""The one exception type that the command line turns into a clean error line."""

from __future__ import annotations


class InputError(Exception):
    """Bad input or usage: reported as one line on stderr with exit code 2."""
