"""How English words are written, from spaCy's word-frequency table, derived once per machine.

The table (``en_lexeme_prob`` in spacy-lookups-data: log probabilities of
case-sensitive word forms over a web corpus) takes ~2 s and ~600 MB to read,
and every worker process would read it. The two sets the name recogniser needs
are ~1 MB, so they are derived once and kept in the model cache
(``SLUICE_MODEL_CACHE``, else ``~/.cache/sluice``), keyed by the table's package
version and the two thresholds below; a new release or threshold derives them again.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import os
from importlib import resources as package_files
from importlib.metadata import version
from pathlib import Path

from pipelines import onnx_model

CAPITALISED_MARGIN = math.log(3)  # written capitalised at least three times as often as not
FREQUENT = -16.0  # log probability of a lower-case form seen often enough to be a word ("cataloging": -15.3)


def cache_path(cache: Path | None = None) -> Path:
    """The derived sets' file: one per table release and thresholds."""
    folder = cache or Path(os.environ.get("SLUICE_MODEL_CACHE") or onnx_model.default_cache())
    rules = hashlib.sha256(f"{CAPITALISED_MARGIN:.6f} {FREQUENT}".encode()).hexdigest()[:8]
    return folder / f"en-word-forms-{version('spacy-lookups-data')}-{rules}.json.gz"


def derive() -> tuple[frozenset[str], frozenset[str]]:
    """(capitalised, frequent) read from the full table. No list of names: a measure of how words
    are written."""
    path = package_files.files("spacy_lookups_data") / "data" / "en_lexeme_prob.json.gz"
    with path.open("rb") as raw, gzip.open(raw) as fh:
        probs: dict[str, float] = json.load(fh)
    capitalised = frozenset(
        word.lower() for word, p in probs.items()
        if word[:1].isupper() and word[1:].islower() and word.isalpha()
        and p - probs.get(word.lower(), -math.inf) > CAPITALISED_MARGIN
    )
    frequent = frozenset(w for w, p in probs.items() if p > FREQUENT and w.isalpha() and w.islower())
    return capitalised, frequent


@functools.cache
def word_forms() -> tuple[frozenset[str], frozenset[str]]:
    """(capitalised, frequent): from the cache file, derived and written there first if missing or
    unreadable. A cache that cannot be written (read-only home) only costs the derivation."""
    path = cache_path()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        return frozenset(data["capitalised"]), frozenset(data["frequent"])
    except (OSError, ValueError, KeyError):
        pass
    capitalised, frequent = derive()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            json.dump({"capitalised": sorted(capitalised), "frequent": sorted(frequent)}, fh)
        os.replace(tmp, path)  # atomic: concurrent workers write the same content
    except OSError:
        tmp.unlink(missing_ok=True)
    return capitalised, frequent
