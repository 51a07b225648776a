"""Names from outside (file names, object keys) as logs show them.

A file may be named ``"a\\n<date> INFO ... queued"`` or carry ANSI escapes: logged as
they are, they forge log lines or recolour the terminal of whoever tails the log.
"""

from __future__ import annotations


def escaped(text: str) -> str:
    """``text`` on one line: control and other unprintable characters, and ``\\``, as Python escapes."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii") for c in text)
