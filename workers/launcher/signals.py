"""Stopping on SIGTERM as on Ctrl-C, for every process that starts others and must clean up after them."""

from __future__ import annotations

import signal


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_as_on_ctrl_c() -> None:
    """`kill`, systemd, `docker stop` and CI timeouts send SIGTERM, which would end the process without
    unwinding: raise KeyboardInterrupt instead, so every ``finally`` stops the private Redis, the workers
    and the temporary folder it started. SIGINT is set too: a process started in the background by a
    script inherits it ignored."""
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
