"""The follow-up steps of the flow (graph_extract -> summarise -> graph_apply) and the hooks the
upsert and delete stages call.

After ``upsert`` (``after_upsert``) the chunk list and the named entities the redact stage
recognised are kept (upsert drops the other artifacts); ``graph_extract`` locates those entities in
each chunk on a pipeline worker (never in the index owner's threads); ``summarise`` stores the
document's summary on the same worker; ``graph_apply`` hands the contribution to the index owner,
which persists and applies it only if the index still holds that very version of the document,
and indexes the summary. A delete reaches the graph inside the ``delete`` stage, which already
runs in the index owner."""

from __future__ import annotations

import json
import time

from pipelines.summarise import EXTRACTIVE_METHOD, extractive_summary, plan
from schemas.events import Event
from schemas.graph import DocContribution
from schemas.summaries import Summary
from workers.followups import batch, relations, summaries
from workers.followups.graphs import graphs, marker
from workers.followups.kept import FOLLOWUP, followup_chunks, followup_kept
from workers.runtime import dispatch, flow, resources
from workers.runtime.config import settings
from workers.runtime.state import Expired, State
from workers.runtime.state.base import text
from workers.runtime.step import step


def after_upsert(state: State, event: Event, entities: list[tuple[str, str]]) -> bool:
    """Keep the chunks for the follow-up stages, unless graph and summary are already current.

    Returns whether follow-ups started: the event then stays in flight until the
    last of them (``graph_apply``) releases it, so admission control bounds them too.
    """
    if not settings().followups:
        return False
    raw = state.r.get(marker(event.doc_id))
    needs_summary = summaries.refresh(state, event)
    if raw and text(raw) == event.version and not needs_summary and not event.force:
        return False
    kept = {"chunks": json.loads(state.get_json("chunks", event.event_id)), "entities": entities}
    state.put_json(FOLLOWUP, event.event_id, json.dumps(kept))
    dispatch.hand_on(flow.AFTER_UPSERT, event.event_id)
    return True


def after_delete(state: State, event: Event) -> None:
    """Runs in the query worker's ``delete`` stage: the document leaves the graph and loses its summary."""
    graphs().forget(event.doc_id)
    state.r.delete(marker(event.doc_id))
    batch.forget(state, event.doc_id)


@step("graph_extract")
def graph_extract(state: State, event: Event) -> None:
    raw = state.r.get(marker(event.doc_id))
    if raw and text(raw) == event.version and not event.force:
        return  # this version is in the graph already
    from pipelines.graph_extract import extract

    chunks, entities = followup_kept(state, event.event_id)
    contribution = extract(
        event.doc_id, event.version, [(c.position, c.hash, c.text) for c in chunks], entities,
        tenant=event.tenant, key=event.key,
    )
    state.put_json("graphcontrib", event.event_id, contribution.model_dump_json())
    relations.request(batch.summariser(state), contribution, chunks)  # typed relations, when a model is configured


@step("summarise")
def summarise(state: State, event: Event) -> None:
    kept = summaries.stored_summary(state, event.doc_id)
    if kept is not None and kept.version == event.version and not event.force:
        return
    texts = [c.text for c in followup_chunks(state, event.event_id)]
    local = Summary(doc_id=event.doc_id, version=event.version, text=extractive_summary(texts), kind="extractive",
                    method=EXTRACTIVE_METHOD, created_at=time.time())
    if not summaries.publish(state, local, index=False) or not summaries.batch_enabled():  # graph_apply indexes it
        return
    config = settings()
    summariser = batch.summariser(state)
    summariser.enqueue(plan(event.doc_id, event.version, texts, summariser.prompt, summariser.count, config.summary_input_tokens, summariser.cfg.words,
                   time.time()))


@step("graph_apply")
def graph_apply(state: State, event: Event) -> None:
    """The last follow-up, in the index owner: apply the document's contribution (if still current)
    and index its summary; the step runtime then releases the event whatever happened."""
    _apply(state, event.event_id)
    summaries.index_summary_of(state, event.doc_id)


def _apply(state: State, event_id: str) -> str:
    try:
        contribution = DocContribution.model_validate_json(state.get_json("graphcontrib", event_id))
    except Expired:
        return "expired"  # nothing extracted (already current, superseded or failed)
    graph_set = graphs()
    with graph_set.lock:  # checked and applied under the lock a delete's forget also takes
        indexed = {p.get("doc_version") for p in resources.index().chunk_hashes(contribution.doc_id).values()}
        if indexed == {contribution.version}:
            graph_set.apply(contribution)
            state.r.set(marker(contribution.doc_id), contribution.version)
            outcome = "applied"
        else:
            outcome = "stale"  # changed or deleted since; its newer event brings its own contribution
    state.drop("graphcontrib", event_id)
    return outcome
