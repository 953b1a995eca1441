"""The failures a user can act on. The tasks turn each into one `error:` line and exit 1.

Every such exception derives from `UserError`, so the task layer catches one type; the
modules that raise them stay free of invoke.
"""


class UserError(Exception):
    """A refusal or failure whose message says what is wrong and what to do."""


class ReleaseError(UserError, RuntimeError):
    """A release step refused to run or failed."""


SHOWN_CHARS = 60
# A path or a path template in an error names the very file or partition: whole up to this.
PATH_CHARS = 240


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` as an error message quotes it (repr), cut to a readable length: an error line
    stays one line whatever a user typed or a file held."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}...{text[-8:]} ({len(text)} characters)"
