"""Failure classes every stage raises; the transport decides retry vs dead letter."""


class PermanentError(Exception):
    """The input will never succeed as it is; the message is for a person to read."""


class TransientError(Exception):
    """Worth retrying later (a service was briefly unreachable, a lock was held)."""


MIB = 1024 * 1024  # the one unit of every size a person reads (limits are set in bytes)


def mib(size: int) -> str:
    """``size`` bytes in MiB; three decimals below 1 MiB, so a small limit does not read as 0.1."""
    return f"{size / MIB:.{1 if size >= MIB else 3}f} MiB"


def too_large(what: str, size: int, limit: int) -> PermanentError:
    return PermanentError(f"{what} is {mib(size)}, over the {mib(limit)} limit")
