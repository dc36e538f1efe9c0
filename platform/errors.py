"""Errors a user can cause, kept apart so the CLI can answer them with one line and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (suite, name, data, option): the CLI prints the message alone and exits 2."""


class SuiteError(UserError):
    """A suite file that cannot be read or does not validate; the message names file and field."""


class DataNotFound(UserError):
    """A dataset is missing under the data root; the message says where we looked and how to fix it."""


class DataError(UserError):
    """A dataset file that is there but unreadable or inconsistent (corrupt, truncated, labels out
    of range); the message names the file, so the driver refuses it before any job starts."""


def first_line(exc: BaseException) -> str:
    """The news of an error whose text runs on (Ray's, Arrow's, tracebacks of causes): its first
    non-empty line, for a one-line message to the user."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
