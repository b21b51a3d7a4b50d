"""The one error type lungcad raises for anything a user can fix."""


class LungcadError(Exception):
    """A problem with the user's input or environment.

    The message says what was wrong and, where it can, what to do about it. The CLI prints it as
    one line on stderr and exits with status 2; it never shows a traceback for these.
    """
