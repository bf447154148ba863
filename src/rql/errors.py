"""User-facing errors.

Anything raised as :class:`RQLError` is printed by the command line as one line
(``error: <message>``) with a non-zero exit and no traceback. The message must say
what is wrong and what to do about it.
"""


class RQLError(Exception):
    """An error caused by the user's input (files, flags, names), not by a bug."""
