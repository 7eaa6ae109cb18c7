"""The one error type for files the pack cannot use: a ValueError whose message says what the file is and what to do."""


class MotionFormatError(ValueError):
    """An unreadable, wrong-kind or incompatible motion file (or a request it cannot serve)."""
