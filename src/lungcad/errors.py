"""The one error type lungcad raises for anything a user can fix."""


class LungcadError(Exception):
    """A problem with the user's input or environment.

    The message says what was wrong and, where it can, what to do about it. The CLI prints it as
    one line on stderr and exits with status 2; it never shows a traceback for these.
    """


def excerpt(value: object, limit: int = 40) -> str:
    """``value`` as quoted in a message: its repr, cut to ``limit`` characters of the input with
    its full length said, so that an error never echoes a large input back."""
    text = str(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else repr(value)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def first_line(error: BaseException) -> str:
    """The first line of a third-party exception's message (its type's name where it has none),
    for a one-line error."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
