"""Retrieval metrics at document level: nDCG@10, Recall@100, MRR@10.

Pure functions over ranked document ids and graded judgements, so the
evaluation command and the tests compute exactly the same numbers.

Formulas (``rel(d)`` is the qrels grade of document ``d``, 0 when unjudged;
a document is relevant when its grade is above 0):

- nDCG@k = DCG@k / IDCG@k, with DCG@k = sum over ranks i = 1..k of
  ``rel(d_i) / log2(i + 1)`` (linear gain, as pytrec_eval and BEIR report it)
  and IDCG@k the DCG@k of the judged grades sorted from high to low.
- Recall@k = |relevant documents in the top k| / |relevant documents|.
- MRR@k = 1 / rank of the first relevant document in the top k, else 0.

A search returns chunks; a document's score is its best chunk's, so a
document ranks where its best chunk ranks (``best_chunk_ranking``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Judged = Mapping[str, float]  # document id -> grade, for one query
Qrels = Mapping[str, Judged]  # query id -> judgements
Run = Mapping[str, Sequence[str]]  # query id -> ranked document ids, best first


def best_chunk_ranking(hits: Iterable[tuple[str, float]]) -> list[str]:
    """Documents ordered by their best chunk's score; ties keep first-seen order."""
    best: dict[str, float] = {}
    for doc, score in hits:
        if doc not in best or score > best[doc]:
            best[doc] = score
    return sorted(best, key=lambda d: -best[d])  # sorted() is stable


def ndcg_at(ranked: Sequence[str], judged: Judged, k: int = 10) -> float:
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    if idcg == 0:
        return 0.0
    dcg = sum(max(judged.get(d, 0.0), 0.0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    return dcg / idcg


def recall_at(ranked: Sequence[str], judged: Judged, k: int = 100) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at(ranked: Sequence[str], judged: Judged, k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if judged.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def judged_queries(qrels: Qrels) -> list[str]:
    """Queries with at least one relevant document: the only ones a metric can score."""
    return [q for q, judged in qrels.items() if any(g > 0 for g in judged.values())]


def evaluate(run: Run, qrels: Qrels) -> dict[str, float]:
    """Means over every judged query; a query missing from the run scores 0."""
    queries = judged_queries(qrels)
    if not queries:
        raise ValueError("no query has a relevant document")
    totals = {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for q in queries:
        ranked, judged = run.get(q, []), qrels[q]
        totals["ndcg@10"] += ndcg_at(ranked, judged, 10)
        totals["recall@100"] += recall_at(ranked, judged, 100)
        totals["mrr@10"] += mrr_at(ranked, judged, 10)
    return {name: round(total / len(queries), 4) for name, total in totals.items()}
