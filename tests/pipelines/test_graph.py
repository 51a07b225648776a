"""The entity graph: normalisation, extraction, exact incremental maintenance, queries.

Unit tests run on hand-written contributions (no broker); the integration
tests at the end drive the real stages through Redis and Celery.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.graph import KnowledgeGraph, rrf
from pipelines.graph_communities import louvain
from pipelines.graph_extract import entity_key, mentions_from
from pipelines.graph_store import GraphSet
from schemas.graph import (
    ChunkEntities,
    ChunkRelations,
    DocContribution,
    Mention,
    RelationMention,
)


def contribution(doc_id: str, chunks: list[list[str]], version: str = "v1", tenant: str = "default",
                 predicates: list[str | None] | None = None) -> DocContribution:
    """Chunks given as lists of surface names; the chunk hash is derived from the names. A predicate
    for a chunk relates its first name to its last (typed relations, as a model's answer would)."""
    out = []
    for pos, names in enumerate(chunks):
        mentions = [Mention(key=entity_key(n), text=n, type="PERSON" if n.startswith("<") else "ORG") for n in names]
        predicate = (predicates or [])[pos] if pos < len(predicates or []) else None
        relations = [RelationMention(subject=mentions[0].key, predicate=predicate, object=mentions[-1].key)] if (
            predicate and mentions and mentions[0].key != mentions[-1].key) else []
        out.append(ChunkEntities(chunk_hash=f"h{'-'.join(names)}", position=pos, mentions=mentions, relations=relations))
    return DocContribution(doc_id=doc_id, version=version, tenant=tenant, chunks=out)


# --------------------------------------------------------------------------- normalisation and extraction


def test_variants_of_one_name_merge_into_one_key():
    assert {entity_key(n) for n in ("Acme Inc.", "ACME", "the Acme", "Acme's", "Acme Corp")} == {"acme"}
    assert entity_key("U.S.") == entity_key("US") == "us"
    assert entity_key("<PERSON_3f9a1c2b>") == "person:3f9a1c2b"
    assert entity_key("Globex Corporation") == "globex" and entity_key("Inc") == "inc"


def test_mentions_come_from_ner_spans_and_pseudonyms_only():
    text = "<PERSON_3f9a1c2b> met Acme Inc. in Berlin on 3 March 2024; <EMAIL_ADDRESS_0011aabb> was cc'd."
    ents = [(0, 17, "ORG"), (22, 31, "ORG"), (35, 41, "GPE"), (45, 57, "DATE"), (0, 5, "PERSON"), (59, 70, "ORG"),
            (22, 31, "PERSON"), (35, 41, "PERSON")]
    mentions, dates = mentions_from(text, ents)
    assert [(m.key, m.type) for m in mentions] == [
        ("person:3f9a1c2b", "PERSON"), ("acme", "ORG"), ("berlin", "GPE"), ("acme", "ORG")]  # "Acme Inc." as PERSON
    assert dates == ["3 march 2024"]


def test_extraction_links_people_across_chunks_without_names():
    from pipelines.graph_extract import extract
    from pipelines.redact import Redactor

    raw = [
        "Acme Inc. hired Margaret Holloway to inspect the pumps in Springfield in March 2024.",
        "The engineers at ACME Inc sent Margaret Holloway to the Berlin office.",
    ]
    redacted = Redactor(b"graph-test-secret").redact_many(raw)  # recognition happens once, here
    entities = [e for r in redacted for e in r.entities]
    c = extract("d1", "v1", [(i, f"h{i}", r.text) for i, r in enumerate(redacted)], entities)
    kg = KnowledgeGraph.build([c])
    person = next(k for k in kg.nodes if k.startswith("person:"))
    assert "acme" in kg.nodes and "springfield" in kg.nodes and "berlin" in kg.nodes
    assert kg.nodes["acme"].mentions == 2 and set(kg.nodes["acme"].aliases) == {"Acme Inc.", "ACME Inc"}
    assert kg.g.has_edge("acme", person) and kg.g["acme"][person]["weight"] == 2
    assert c.chunks[0].dates == ["march 2024"]
    assert all("Margaret" not in m.text and "Holloway" not in m.text for ch in c.chunks for m in ch.mentions)


def test_every_occurrence_of_a_recognised_name_counts_across_line_breaks():
    from pipelines.graph_extract import extract

    chunks = [(0, "a", "Globex\nCorporation ships to <PERSON_3f9a1c2b>; Globex Corporation again."),
              (1, "b", "Nothing here but Globexia and <PERSON_3f9a1c2b>.")]
    c = extract("d1", "v1", chunks, [("Globex Corporation", "PERSON")])  # the small model's misreading
    assert [(m.key, m.type, m.text) for m in c.chunks[0].mentions if m.type != "PERSON"] == [
        ("globex", "ORG", "Globex Corporation"), ("globex", "ORG", "Globex Corporation")]
    assert [m.key for m in c.chunks[1].mentions] == ["person:3f9a1c2b"]  # no match inside a longer word


# --------------------------------------------------------------------------- incremental == rebuilt

NAMES = ["Acme", "ACME Inc.", "Globex", "Berlin", "Springfield", "<PERSON_3f9a1c2b>", "<PERSON_00aa11bb>", "GDPR"]
chunk_st = st.lists(st.sampled_from(NAMES), min_size=0, max_size=4)
predicate_st = st.sampled_from([None, "supplies", "owns", "located_in"])
contrib_st = st.builds(
    lambda doc, chunks, v, preds: contribution(doc, chunks, v, predicates=preds),
    st.sampled_from(["d1", "d2", "d3", "d4"]),
    st.lists(chunk_st, min_size=0, max_size=4),
    st.sampled_from(["v1", "v2", "v3"]),
    st.lists(predicate_st, max_size=4),  # typed relations are part of the contribution
)
ops_st = st.lists(
    st.one_of(st.tuples(st.just("put"), contrib_st), st.tuples(st.just("delete"), st.sampled_from(["d1", "d2", "d3", "d4"])),
              st.tuples(st.just("relate"), st.tuples(st.sampled_from(["d1", "d2", "d3", "d4"]), predicate_st))),
    max_size=14,
)


def _relate(c: DocContribution, predicate: str | None) -> ChunkRelations | None:
    """A model's validated answer arriving for the first chunk of a document's current version."""
    if not c.chunks or len({m.key for m in c.chunks[0].mentions}) < 2:
        return None
    keys = sorted({m.key for m in c.chunks[0].mentions})
    relations = [RelationMention(subject=keys[0], predicate=predicate, object=keys[-1])] if predicate else []
    return ChunkRelations(doc_id=c.doc_id, version=c.version, chunk_hash=c.chunks[0].chunk_hash, relations=relations)


def _with(c: DocContribution, found: ChunkRelations) -> DocContribution:
    chunks = [ch.model_copy(update={"relations": found.relations}) if ch.chunk_hash == found.chunk_hash else ch
              for ch in c.chunks]
    return c.model_copy(update={"chunks": chunks})


def _run(ops, kg: KnowledgeGraph) -> dict[str, DocContribution]:
    alive: dict[str, DocContribution] = {}
    for op, arg in ops:
        if op == "put":
            kg.add(arg)
            alive[arg.doc_id] = arg
        elif op == "relate":
            found = _relate(alive[arg[0]], arg[1]) if arg[0] in alive else None
            if found:
                alive[arg[0]] = _with(alive[arg[0]], found)
                kg.add(alive[arg[0]])
        else:
            kg.remove(arg)
            alive.pop(arg, None)
    return alive


@settings(max_examples=200, deadline=None)
@given(ops_st)
def test_incremental_graph_equals_graph_rebuilt_from_surviving_documents(ops):
    kg = KnowledgeGraph()
    alive = _run(ops, kg)
    rebuilt = KnowledgeGraph.build(alive.values())
    assert kg.canonical() == rebuilt.canonical()
    def weights(g):
        return sorted((*sorted((a, b)), w) for a, b, w in g.edges(data="weight"))

    assert weights(kg.g) == weights(rebuilt.g)
    if alive:  # views built from the counters agree too (names, types, typed relations)
        assert [kg.entity(k) for k in sorted(kg.nodes)] == [rebuilt.entity(k) for k in sorted(rebuilt.nodes)]
        assert [kg.relations_of(k) for k in sorted(kg.nodes)] == [rebuilt.relations_of(k) for k in sorted(rebuilt.nodes)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops_st)
def test_graph_reloaded_from_its_store_equals_the_rebuilt_graph(ops):
    with tempfile.TemporaryDirectory() as tmp:
        gs = GraphSet.open(Path(tmp) / "g.sqlite3")
        alive: dict[str, DocContribution] = {}
        for op, arg in ops:
            if op == "put":
                gs.apply(arg)
                alive[arg.doc_id] = arg
            elif op == "relate":  # through GraphSet.attach, as the query worker does
                found = _relate(alive[arg[0]], arg[1]) if arg[0] in alive else None
                if found:
                    assert gs.attach(found) in ("applied", "unchanged")
                    alive[arg[0]] = _with(alive[arg[0]], found)
            else:
                gs.forget(arg)
                alive.pop(arg, None)
        gs.store.close()
        reloaded = GraphSet.open(Path(tmp) / "g.sqlite3")
        assert reloaded.graph().canonical() == KnowledgeGraph.build(alive.values()).canonical()
        reloaded.store.close()


def test_delete_removes_every_entity_and_edge_left_without_support():
    kg = KnowledgeGraph()
    kg.add(contribution("d1", [["Acme", "Berlin"], ["Acme", "GDPR"]]))
    kg.add(contribution("d2", [["ACME Inc.", "Springfield"]]))
    assert kg.nodes["acme"].mentions == 3 and kg.g["acme"]["berlin"]["weight"] == 1
    kg.add(contribution("d1", [["Acme"]], version="v2"))  # an edit drops Berlin and GDPR
    assert "berlin" not in kg.nodes and "gdpr" not in kg.nodes and not kg.g.has_edge("acme", "berlin")
    kg.remove("d2")
    assert set(kg.nodes) == {"acme"} and kg.nodes["acme"].aliases == {"Acme": 1}
    kg.remove("d1")
    assert not kg.nodes and kg.g.number_of_nodes() == 0


# --------------------------------------------------------------------------- queries


@pytest.fixture
def small_graph() -> KnowledgeGraph:
    return KnowledgeGraph.build([
        contribution("d1", [["Acme", "Berlin"], ["Acme", "<PERSON_3f9a1c2b>"], ["Berlin", "GDPR"]]),
        contribution("d2", [["Globex", "Springfield"], ["Globex", "Springfield", "<PERSON_00aa11bb>"]]),
        contribution("d3", [["ACME Inc.", "Globex"]]),
    ])


def test_lookup_finds_entities_by_name_alias_and_pseudonym(small_graph):
    assert small_graph.lookup("acme")[0][0] == "acme"
    assert small_graph.lookup("ACME Inc")[0][0] == "acme"
    assert small_graph.lookup("who is <PERSON_3f9a1c2b>?")[0][0] == "person:3f9a1c2b"
    assert small_graph.lookup("nothing like that") == []
    entity = small_graph.entity("acme")
    assert entity.name == "Acme" and entity.aliases == ["Acme", "ACME Inc."] and entity.documents == 2


def test_neighbours_path_and_communities(small_graph):
    assert [n.entity.id for n in small_graph.neighbours("acme")] == ["berlin", "globex", "person:3f9a1c2b"]
    path = small_graph.path("gdpr", "springfield")
    assert [e.id for e in path.entities] == ["gdpr", "berlin", "acme", "globex", "springfield"]
    assert path.steps[0].chunks[0].doc_id == "d1"
    assert small_graph.path("gdpr", "nowhere") is None
    groups = louvain(small_graph.snapshot())
    assert sum(len(g) for g in groups) == small_graph.g.number_of_nodes()
    together = next(g for g in groups if "globex" in g)
    assert "springfield" in together and "gdpr" not in together


def test_graph_search_returns_chunks_near_the_query_entities(small_graph):
    hits = small_graph.search("what did Berlin decide", hops=0, k=5)
    assert {h[0] for h in hits} == {"d1:hAcme-Berlin", "d1:hBerlin-GDPR"}
    wider = [h[0] for h in small_graph.search("Berlin", hops=1, k=10)]
    assert wider[:2] == ["d1:hAcme-Berlin", "d1:hBerlin-GDPR"] and "d1:hAcme-<PERSON_3f9a1c2b>" in wider
    assert rrf([["a", "b"], ["b", "c"]])[0][0] == "b"


def test_graph_search_honours_group_by_document(small_graph):
    import numpy as np

    from pipelines.graph_query import graph_hits, mix
    from pipelines.index import IndexPoint, ServerIndex, Sparse

    index = ServerIndex(":memory:", "graph-grouping")  # qdrant-client's local mode: the server API
    chunk_ids = sorted({c for n in small_graph.nodes.values() for c in n.chunks})
    index.upsert([IndexPoint(d, h, np.ones(384, dtype=np.float32), Sparse([1], [1.0]),
                             {"doc_id": d, "chunk_hash": h, "position": i, "key": f"{d}.md", "text": h})
                  for i, (d, h) in enumerate(c.split(":", 1) for c in chunk_ids)])
    every = graph_hits(small_graph, index, "Acme Berlin", k=10, where=None, hops=1)
    assert len(every) > len({h.doc_id for h in every})  # several chunks of d1
    grouped = graph_hits(small_graph, index, "Acme Berlin", k=10, where=None, hops=1, group_by_document=True)
    firsts = [h for i, h in enumerate(every) if h.doc_id not in {e.doc_id for e in every[:i]}]  # best chunk per doc
    assert [(h.doc_id, h.position) for h in grouped] == [(h.doc_id, h.position) for h in firsts]
    assert len(graph_hits(small_graph, index, "Acme Berlin", k=1, where=None, group_by_document=True)) == 1
    fused = mix(every, list(reversed(every)), k=10, group_by_document=True)
    assert len(fused) == len({h.doc_id for h in fused}) == len({h.doc_id for h in every})


def test_tenants_get_separate_graphs(tmp_path):
    gs = GraphSet.open(tmp_path / "g.sqlite3", per_tenant=True)
    gs.apply(contribution("d1", [["Acme", "Berlin"]], tenant="acme"))
    gs.apply(contribution("d2", [["Globex", "Berlin"]], tenant="globex"))
    assert set(gs.graph("acme").nodes) == {"acme", "berlin"} and "acme" not in gs.graph("globex").nodes
    gs.apply(contribution("d1", [["Acme"]], tenant="globex"))  # the document moved tenant
    assert not gs.graph("acme").nodes and "acme" in gs.graph("globex").nodes
    assert gs.communities("globex") and gs.communities("nobody") == []


def test_load_time_is_recorded(tmp_path):
    gs = GraphSet.open(tmp_path / "g.sqlite3")
    gs.apply(contribution("d1", [["Acme", "Berlin"]]))
    again = GraphSet.open(tmp_path / "g.sqlite3")
    assert again.graph().stats().edges == 1 and 0 < again.load_seconds < 5


# --------------------------------------------------------------------------- through Redis, Celery, the API and the CLI

DOCS = {
    "acme-visit.md": "# Site visit\n\nMrs. Margaret Holloway of Acme Inc. inspected the Springfield pumping station "
                     "on 3 March 2024. Acme Inc. will replace the intake screens before the summer.",
    "contract.md": "# Contract\n\nMargaret Holloway signed the maintenance contract between Acme Corp. and Globex Corporation "
                   "in Springfield. Globex Corporation supplies the chlorine for the Springfield plant.",
    "board.md": "# Board minutes\n\nThe Riverside Water Board met in Shelbyville. The Riverside Water Board approved "
                "the budget of the Shelbyville reservoir and thanked the Environmental Protection Agency.",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from fastapi.testclient import TestClient

    from harness import Sluice

    root = tmp_path_factory.mktemp("graph")
    s = Sluice(root)
    s.start_workers()
    from workers.http.api import create_app

    with TestClient(create_app()) as http:
        yield s, http, root
    s.close()


def _ask(op: str, **params):
    from workers.query.tasks import graph_query

    return graph_query.apply_async((op, params)).get(timeout=60)


def _ingest_and_settle(folder: Path, documents: int) -> None:
    from workers import client
    from workers.runtime.config import settings

    st = client.connect(settings())
    report = client.ingest(st, settings(), client.events_for([folder], settings()), wait=True)
    assert not report.failed, report.failed
    deadline = time.monotonic() + 180
    while True:  # the graph follows the index asynchronously: wait until it holds exactly the indexed versions
        check = _ask("verify")
        if check["versions_match_index"] and check["documents"] == documents:
            assert check["rebuilt_equals_live"]
            return
        assert time.monotonic() < deadline, check
        time.sleep(0.5)


def test_graph_is_built_browsable_and_searchable(live):
    _, http, root = live
    folder = root / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    _ingest_and_settle(folder, 3)

    found = http.get("/graph/entities", params={"q": "acme"}).json()
    assert found[0]["id"] == "acme" and found[0]["documents"] == 2 and {"Acme Inc.", "Acme Corp."} == set(found[0]["aliases"])
    detail = http.get("/graph/entities/acme").json()
    assert "springfield" in {n["entity"]["id"] for n in detail["neighbours"]}
    assert detail["chunks"] and all(c["text"] and c["key"] for c in detail["chunks"])
    people = [n["entity"] for n in detail["neighbours"] if n["entity"]["type"] == "PERSON"]
    assert people and people[0]["id"].startswith("person:")  # linked by pseudonym across documents
    person = http.get(f"/graph/entities/{people[0]['id']}").json()["entity"]
    assert person["documents"] == 2 and not any("Holloway" in a for a in person["aliases"])

    path = http.get("/graph/path", params={"from": "Globex", "to": "acme"}).json()
    assert path["entities"][0]["id"] == "globex" and path["steps"][0]["chunks"][0]["key"] == "contract.md"
    assert http.get("/graph/path", params={"from": "acme", "to": "shelbyville"}).status_code == 404
    groups = http.get("/graph/communities").json()
    board = next(g for g in groups if "shelbyville" in {e["id"] for e in g["entities"]})
    assert "acme" not in {e["id"] for e in board["entities"]}

    graph = http.get("/search", params={"q": "What did Globex supply?", "mode": "graph"}).json()["hits"]
    assert graph and graph[0]["key"] == "contract.md" and graph[0]["retrievers"] == ["graph"]
    mixed = http.get("/search", params={"q": "Globex chlorine", "mode": "mix"}).json()["hits"]
    assert mixed[0]["key"] == "contract.md" and set(mixed[0]["retrievers"]) >= {"graph"}
    for mode in ("graph", "mix"):
        grouped = http.get("/search", params={"q": "Acme Springfield", "mode": mode, "group_by_document": "true"})
        hits = grouped.json()["hits"]
        assert hits and len({h["doc_id"] for h in hits}) == len(hits), mode

    doc_id = graph[0]["doc_id"]
    summary = http.get(f"/documents/{doc_id}").json()["summary"]
    assert summary["kind"] == "extractive" and "Globex" in summary["text"] and "Holloway" not in summary["text"]

    from typer.testing import CliRunner

    from workers.cli import app

    out = CliRunner().invoke(app, ["graph", "entities", "globex", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["id"] == "globex"
    out = CliRunner().invoke(app, ["graph", "path", "globex", "acme"])
    assert out.exit_code == 0 and "Globex" in out.output


def test_edits_deletes_and_restarts_keep_the_graph_exact(live):
    s, http, root = live
    folder = root / "docs"
    (folder / "contract.md").write_text("# Contract\n\nThe maintenance contract with Globex Corporation was renewed.")
    (folder / "board.md").unlink()
    _ingest_and_settle(folder, 2)
    assert http.get("/graph/entities", params={"q": "Shelbyville"}).json() == []
    acme = http.get("/graph/entities/acme").json()["entity"]
    assert acme["documents"] == 1 and acme["aliases"] == ["Acme Inc."]
    before = _ask("canonical")

    s.stop("query")  # the graph must come back from its store, not from Redis or memory
    s.start("query", "query-worker", "--name", "query@test")
    s.wait_for_workers({"query@test"})
    assert _ask("canonical") == before
    stats = _ask("stats")
    assert stats["documents"] == 2 and stats["load_seconds"] < 5
    assert _ask("verify")["rebuilt_equals_live"]
