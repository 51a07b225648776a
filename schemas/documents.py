"""What a document becomes on its way through the stages."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Element(BaseModel):
    """One structural piece of a parsed document (a heading, paragraph, table...)."""

    text: str
    kind: str = "text"  # title | text | list | table | code | ...
    section: str | None = None  # nearest heading above this element
    page: int | None = None


class ParsedDocument(BaseModel):
    """Output of the parse stage: ordered elements plus document-level facts."""

    file_type: str
    title: str | None = None
    elements: list[Element]


class RedactedDocument(BaseModel):
    """Parsed document after PII redaction; counts are per entity type, never values."""

    file_type: str
    title: str | None = None
    elements: list[Element]
    pii_counts: dict[str, int] = Field(default_factory=dict)
    entities: list[tuple[str, str]] = Field(default_factory=list)
    """(surface, label) of the named entities redaction left intact: the entity graph's input."""


class Chunk(BaseModel):
    """A piece of redacted text sized to fit the embedder's window."""

    doc_id: str
    position: int
    text: str
    hash: str  # sha256 of the normalised text
    section: str | None = None
    page: int | None = None
    title: str | None = None


class ChunkPlan(BaseModel):
    """What the diff stage decided for one document."""

    embed: list[int]  # positions of chunks whose hash is new
    reuse: list[int]  # positions whose hash is already indexed
    delete: list[str]  # chunk hashes indexed before that vanished
    space: str = ""  # the vector space (index generation) the plan was made against
