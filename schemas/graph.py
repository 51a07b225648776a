"""The entity graph: what one document contributes, and what graph queries answer.

A document's contribution is the unit of change: the graph is the sum of the
contributions of the documents that exist, so replacing or removing one
contribution is all an edit or a delete needs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The closed vocabulary of typed relations a model may state between two entities of a chunk.
# Closed rather than free text: the graph sums each (subject, predicate, object) over chunks and
# documents, so "supplies", "is the supplier of" and "provides chlorine to" must be one edge, not
# three; normalising free text afterwards would be a second, silent guess at what the model meant.
# A strict JSON schema makes the model choose from this list while decoding, and pydantic checks
# it again on arrival. What the list cannot express stays a co-occurrence edge.
Predicate = Literal[
    "part_of", "located_in", "works_for", "member_of", "owns", "operates", "supplies", "contracts_with",
    "partners_with", "regulates", "funds", "governed_by",
]


class Mention(BaseModel):
    """One occurrence of an entity in a chunk."""

    key: str  # normalised name: the entity's id ("acme", "person:3f9a1c2b")
    text: str  # surface form as written (an alias)
    type: str  # spaCy label (ORG, GPE, LOC, FAC, PRODUCT, EVENT, LAW, WORK_OF_ART) or PERSON for pseudonyms


class RelationMention(BaseModel):
    """A typed relation one chunk states between two of its own entities (keys, as in ``Mention``)."""

    subject: str
    predicate: Predicate
    object: str


class ChunkEntities(BaseModel):
    """The entities and dates of one chunk; co-occurrence edges come from here, typed relations too
    once a model's answer for this chunk arrived and passed validation."""

    chunk_hash: str
    position: int
    mentions: list[Mention] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)  # kept as attributes of the chunk's entities
    relations: list[RelationMention] = Field(default_factory=list)


class ChunkRelations(BaseModel):
    """Validated relations for one chunk of one document version, on their way to the graph."""

    doc_id: str
    version: str
    chunk_hash: str
    relations: list[RelationMention]


class RelationClaim(BaseModel):
    """One relation as the model must answer it (structured outputs; ``strict`` JSON schema)."""

    model_config = ConfigDict(extra="forbid")

    subject: str
    predicate: Predicate
    object: str


class RelationAnswer(BaseModel):
    """The whole structured answer for one chunk: a list, possibly empty."""

    model_config = ConfigDict(extra="forbid")

    relations: list[RelationClaim]


class DocContribution(BaseModel):
    """Everything one version of one document adds to the graph."""

    doc_id: str
    version: str
    tenant: str = "default"
    key: str = ""
    chunks: list[ChunkEntities] = Field(default_factory=list)


class EntityRef(BaseModel):
    id: str
    name: str
    type: str


class Entity(EntityRef):
    aliases: list[str] = Field(default_factory=list)
    mentions: int = 0
    documents: int = 0
    chunks: int = 0
    dates: list[str] = Field(default_factory=list)
    score: float | None = None  # lookup relevance, when found by a query


class ChunkRef(BaseModel):
    """A supporting chunk; text and key are filled in from the index when asked for."""

    doc_id: str
    chunk_hash: str
    key: str | None = None
    position: int | None = None
    text: str | None = None


class Neighbour(BaseModel):
    entity: EntityRef
    weight: int  # chunks in which both occur
    relation: str = "co-occurs"


class Relation(BaseModel):
    """A typed relation seen from one entity: ``out`` when it is the subject, ``in`` when the object."""

    predicate: str
    direction: Literal["out", "in"]
    entity: EntityRef  # the other end
    weight: int  # chunks stating it
    chunks: list[ChunkRef] = Field(default_factory=list)


class EntityDetail(BaseModel):
    entity: Entity
    neighbours: list[Neighbour]
    relations: list[Relation] = Field(default_factory=list)  # typed, from a model's structured outputs
    chunks: list[ChunkRef]


class PathStep(BaseModel):
    source: str
    target: str
    weight: int
    chunks: list[ChunkRef]


class GraphPath(BaseModel):
    entities: list[EntityRef]
    steps: list[PathStep]


class Community(BaseModel):
    id: int
    size: int
    entities: list[EntityRef]  # the most mentioned members first


class GraphStats(BaseModel):
    documents: int
    entities: int
    edges: int
    revision: int
    relations: int = 0  # distinct typed (subject, predicate, object) triples
