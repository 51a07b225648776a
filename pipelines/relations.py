"""Typed relations between a chunk's entities, asked of a model through the Batch API.

Why per chunk: a relation is only trusted between entities NER found in the
same chunk, and the chunk is the unit the graph counts support in, so a
relation joins the document's contribution exactly where its entities are
(pipelines/graph.py) and leaves with them on an edit or a delete.

Why nothing is trusted: the request asks for structured output with a strict
JSON schema generated from ``RelationAnswer``, but every answer is parsed
again with pydantic here and checked against the entities of that very chunk.
An answer that is not JSON, breaks the schema, names anything that is not one
of the chunk's entities, relates an entity to itself, or is a refusal is
rejected as a whole (a model that invented one entity is not trusted for the
rest of that answer): counted, never applied, never retried (temperature 0
would repeat it, and each try costs money).

Only redacted chunk text is sent, between delimiters, with an instruction that
what is inside is data, not instructions (prompts/relations-v1.txt).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pipelines.graph_extract import entity_key
from pipelines.summarise import Prompt, TokenCounter
from schemas.graph import DocContribution, RelationAnswer, RelationMention
from schemas.summaries import SummaryRequest

PROMPT_VERSION = "relations-v1"
MAX_RELATIONS = 20  # per chunk; the prompt says so, and an answer with more is rejected
MAX_TOKENS = 600  # room for MAX_RELATIONS short objects
_DELIMITERS = ("chunk", "entities")


def response_format() -> dict[str, Any]:
    """``response_format`` for chat completions: strict structured output of ``RelationAnswer``."""
    return {"type": "json_schema",
            "json_schema": {"name": "relations", "strict": True, "schema": RelationAnswer.model_json_schema()}}


def custom_id(doc_id: str, version: str, chunk_hash: str) -> str:
    return f"{doc_id}:{version[:16]}:rel:{chunk_hash[:16]}"


def _defuse(text: str) -> str:
    """A delimiter inside the data cannot close the data block early."""
    for name in _DELIMITERS:
        text = text.replace(f"</{name}>", f"</ {name}>").replace(f"<{name}>", f"< {name}>")
    return text


def messages(prompt: Prompt, text: str, entities: Sequence[tuple[str, str, str]]) -> list[dict[str, str]]:
    """``entities`` are (key, name, type); each is one JSON line, so a name cannot break the list either."""
    listed = "\n".join(json.dumps({"id": k, "name": n, "type": t}, ensure_ascii=False) for k, n, t in entities)
    user = prompt.sections["chunk"].format(limit=MAX_RELATIONS, entities=_defuse(listed), text=_defuse(text))
    return [{"role": "system", "content": prompt.sections["system"]}, {"role": "user", "content": user}]


def plan(contribution: DocContribution, texts: dict[str, str], prompt: Prompt, count: TokenCounter, now: float) -> list[SummaryRequest]:
    """One request per distinct chunk with at least two distinct entities (``texts``: chunk hash -> redacted text)."""
    out, seen = [], set()
    for ch in contribution.chunks:
        entities: dict[str, tuple[str, str, str]] = {}
        for m in ch.mentions:
            entities.setdefault(m.key, (m.key, m.text, m.type))
        if len(entities) < 2 or ch.chunk_hash in seen or ch.chunk_hash not in texts:
            continue
        seen.add(ch.chunk_hash)
        msgs = messages(prompt, texts[ch.chunk_hash], list(entities.values()))
        out.append(SummaryRequest(
            custom_id=custom_id(contribution.doc_id, contribution.version, ch.chunk_hash), doc_id=contribution.doc_id, version=contribution.version,
            kind="relations", chunk_hash=ch.chunk_hash, entities=sorted(entities), messages=msgs,
            input_tokens=sum(count(m["content"]) for m in msgs), queued_at=now,
            response_format=response_format(), max_tokens=MAX_TOKENS,
        ))
    return out


@dataclass(frozen=True)
class Verdict:
    relations: list[RelationMention]
    rejected: str = ""  # why the answer was rejected; empty when accepted


def _resolve(value: str, keys: set[str]) -> str | None:
    """The entity key an answer means: its id as listed, or (leniently) a name that normalises to one."""
    if value in keys:
        return value
    key = entity_key(value)
    return key if key in keys else None


def validate(content: str | None, refusal: str | None, entities: Sequence[str]) -> Verdict:
    """Accept an answer only if all of it is valid; reasons name no entity (they are logged)."""
    if refusal:
        return Verdict([], "refusal")
    if not content:
        return Verdict([], "empty answer")
    try:
        answer = RelationAnswer.model_validate_json(content, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return Verdict([], "bad JSON")
        return Verdict([], f"schema: {first['type']} at {'.'.join(map(str, first['loc'])) or 'top level'}")
    if len(answer.relations) > MAX_RELATIONS:
        return Verdict([], f"schema: more than {MAX_RELATIONS} relations")
    keys = set(entities)
    found: set[tuple[str, str, str]] = set()
    for claim in answer.relations:
        subject, obj = _resolve(claim.subject, keys), _resolve(claim.object, keys)
        if subject is None or obj is None:
            return Verdict([], "subject or object is not an entity of this chunk")
        if subject == obj:
            return Verdict([], "an entity related to itself")
        found.add((subject, claim.predicate, obj))
    return Verdict([RelationMention(subject=s, predicate=p, object=o) for s, p, o in sorted(found)])  # type: ignore[arg-type]
