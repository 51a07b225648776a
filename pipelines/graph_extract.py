"""Entity extraction for the graph: normalised entity keys, and the mentions of each redacted chunk.

People appear only as the pseudonym tokens redaction left (``<PERSON_…>``), so they
link across documents without a name ever reaching the graph; recognition itself ran
once, in the redact stage, on the original wording.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

import regex as re

from schemas.graph import (
    ChunkEntities,
    DocContribution,
    Mention,
)

# spaCy labels that become graph entities; DATE becomes an attribute, PERSON
# (names redaction missed) is never used: people enter only as pseudonyms.
ENTITY_LABELS = frozenset({"ORG", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "LAW", "WORK_OF_ART", "NORP"})
# What extraction reads: the above, dates, and PERSON only for the firms the small model calls people.
NER_LABELS = ENTITY_LABELS | {"DATE", "PERSON"}
# Same shape as pipelines.redact.TOKEN_RE (importing that module would load Presidio here).
TOKEN_RE = re.compile(r"<([A-Z][A-Z_]*)_([0-9a-f]{8})>")
_SUFFIXES = frozenset(
    ["inc", "incorporated", "ltd", "limited", "llc", "llp", "lp", "corp", "corporation", "co", "company", "gmbh", "plc", "ag", "sa", "bv", "nv", "oy", "ab", "pty", "srl", "spa"]
)
_WORD_RE = re.compile(r"[\p{L}\p{N}]+")


# --------------------------------------------------------------------------- normalisation


def words(text: str) -> list[str]:
    """Lower-case word tokens; acronym dots and possessives vanish ("U.S.'s" -> ["us"])."""
    t = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    t = re.sub(r"'s\b", "", t)
    t = re.sub(r"(?<=\p{L})\.(?=\p{L})", "", t)
    return _WORD_RE.findall(t)


def entity_key(text: str) -> str:
    """One key per entity however it is written: "Acme Inc.", "ACME" and "the Acme" give "acme"."""
    m = TOKEN_RE.fullmatch(text.strip())
    if m:
        return f"{m.group(1).lower()}:{m.group(2)}"
    ws = words(text)
    while ws and ws[0] == "the":
        ws.pop(0)
    while len(ws) > 1 and ws[-1] in _SUFFIXES:
        ws.pop()
    return "-".join(ws)


def _useful(key: str) -> bool:
    return len(key) >= 2 and not key.replace("-", "").isdigit()


def mentions_from(text: str, ents: Iterable[tuple[int, int, str]]) -> tuple[list[Mention], list[str]]:
    """Mentions and dates of one chunk from NER spans (start, end, label) plus the person tokens."""
    tokens = [(m.start(), m.end()) for m in TOKEN_RE.finditer(text)]
    found = [
        Mention(key=f"person:{m.group(2)}", text=m.group(0), type="PERSON")
        for m in TOKEN_RE.finditer(text)
        if m.group(1) == "PERSON"
    ]
    dates: list[str] = []
    for start, end, label in ents:
        if any(s < end and start < e for s, e in tokens):
            continue  # spaCy reading a pseudonym as a name or an organisation
        surface = " ".join(text[start:end].split())
        if label == "PERSON" and (ws := words(surface)) and ws[-1] in _SUFFIXES:
            label = "ORG"  # the small model calls "Globex Corporation" a person; redaction left it as a firm
        if label == "DATE":
            dates.append(surface.casefold())
        elif label in ENTITY_LABELS and _useful(key := entity_key(surface)):
            found.append(Mention(key=key, text=surface, type=label))
    return found, sorted(set(dates))


def _surface_pattern(surfaces: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern for every surface, longest first, whole words only, any whitespace between words."""
    alternatives = sorted({r"\s+".join(map(re.escape, surface.split())) for surface in surfaces if surface.strip()},
                          key=lambda a: (-len(a), a))
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)") if alternatives else None


def extract(
    doc_id: str,
    version: str,
    chunks: Sequence[tuple[int, str, str]],
    entities: Sequence[tuple[str, str]],
    tenant: str = "default",
    key: str = "",
) -> DocContribution:
    """Mentions per chunk: the document's named entities located in each redacted chunk, plus person tokens.

    ``chunks`` are (position, chunk hash, redacted text); ``entities`` are the
    (surface, spaCy label) pairs the redact stage's recogniser found and redaction
    left intact. Recognition runs once per document, in the redact stage, on the
    original wording (a second spaCy pass over the chunks cost as much as the
    redaction's own); every occurrence of a recognised name in a chunk counts.
    """
    labels: dict[str, str] = {}
    for surface, label in entities:
        labels.setdefault(" ".join(surface.split()), label)  # first reading in document order wins
    pattern = _surface_pattern(labels)
    out = []
    for position, chunk_hash, text in chunks:
        found = pattern.finditer(text) if pattern else ()
        spans = [(m.start(), m.end(), labels[" ".join(m.group(0).split())]) for m in found]
        mentions, dates = mentions_from(text, spans)
        out.append(ChunkEntities(chunk_hash=chunk_hash, position=position, mentions=mentions, dates=dates))
    return DocContribution(doc_id=doc_id, version=version, tenant=tenant, key=key, chunks=out)

