"""The one error type every command prints without a traceback (exit status 2)."""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad input, missing data, a bad flag): printed as one line."""
