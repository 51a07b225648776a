"""Names from outside (file names, object keys) as logs show them.

A file may be named ``"a\\n<date> INFO ... queued"`` or carry ANSI escapes: logged as
they are, they forge log lines or recolour the terminal of whoever tails the log.

A file name is personal data too (``Margarethe_Vollstedt_CV.txt``): logs show a keyed
pseudonym of it instead, shaped like the redactor's (``<FILE_3f9a2c1b>.txt``), stable for
one secret so an operator can follow one file through the logs without learning its name.
The watcher that writes most of these lines runs no model, so the whole name is hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from workers.runtime.config import settings

_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,8})$")


def escaped(text: str) -> str:
    """``text`` on one line: control and other unprintable characters, and ``\\``, as Python escapes."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii") for c in text)


def shown(key: str) -> str:
    """A file name or object key as logs show it: ``<FILE_xxxxxxxx>`` and its extension, keyed with
    ``SLUICE_PSEUDONYM_SECRET`` (HMAC-SHA256 of the NFKC-normalised key, as text pseudonyms are)."""
    secret = settings().pseudonym_secret.get_secret_value().encode()
    digest = hmac.new(secret, unicodedata.normalize("NFKC", key).encode("utf-8", "surrogateescape"), hashlib.sha256)
    extension = _EXTENSION.search(key)
    return f"<FILE_{digest.hexdigest()[:8]}>" + (f".{extension.group(1).lower()}" if extension else "")
