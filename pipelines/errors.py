"""Failure classes every stage raises; the transport decides retry vs dead letter."""


class PermanentError(Exception):
    """The input will never succeed as it is; the message is for a person to read."""


class TransientError(Exception):
    """Worth retrying later (a service was briefly unreachable, a lock was held)."""
