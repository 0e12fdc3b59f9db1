"""Errors that reach the user as one line."""


class UserError(Exception):
    """Bad input or an unusable model: the message is shown to the user as it is, on one line."""


class Cancelled(Exception):
    """A long computation was stopped on request."""
