"""The entity graph: what one document contributes, and what graph queries answer.

A document's contribution is the unit of change: the graph is the sum of the
contributions of the documents that exist, so replacing or removing one
contribution is all an edit or a delete needs.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Mention(BaseModel):
    """One occurrence of an entity in a chunk."""

    key: str  # normalised name: the entity's id ("acme", "person:3f9a1c2b")
    text: str  # surface form as written (an alias)
    type: str  # spaCy label (ORG, GPE, LOC, FAC, PRODUCT, EVENT, LAW, WORK_OF_ART) or PERSON for pseudonyms


class ChunkEntities(BaseModel):
    """The entities and dates of one chunk; co-occurrence edges come from here."""

    chunk_hash: str
    position: int
    mentions: list[Mention] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)  # kept as attributes of the chunk's entities


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


class EntityDetail(BaseModel):
    entity: Entity
    neighbours: list[Neighbour]
    relations: list[Neighbour] = Field(default_factory=list)  # typed relations: not extracted yet
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
