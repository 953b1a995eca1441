"""The one exception type the tasks turn into a one-line error and a non-zero exit."""


class ReleaseError(RuntimeError):
    """A release step refused to run or failed; the message says why and what to do."""
