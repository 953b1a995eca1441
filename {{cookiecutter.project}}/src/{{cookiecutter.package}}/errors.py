"""The failures a user can act on. The tasks turn each into one `error:` line and exit 1.

Every such exception derives from `UserError`, so the task layer catches one type; the
modules that raise them stay free of invoke.
"""


class UserError(Exception):
    """A refusal or failure whose message says what is wrong and what to do."""


class ReleaseError(UserError, RuntimeError):
    """A release step refused to run or failed."""
