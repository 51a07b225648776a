"""Named points where a test can make this process die as a crash would (``SLUICE_FAILPOINT=name``).

Crash recovery is only believable if a test can crash at the worst moment: between
writing a document's new version and making it visible, say. Unset (always, outside
tests), a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os

ENV = "SLUICE_FAILPOINT"


def failpoint(name: str) -> None:
    """Exit at once, without cleanup (``os._exit``, like SIGKILL), when ``name`` is the armed failpoint."""
    if os.environ.get(ENV) == name:
        os._exit(70)
