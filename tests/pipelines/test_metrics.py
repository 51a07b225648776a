"""The retrieval metrics against values computed by hand on a tiny qrels set."""

import pytest

from pipelines.metrics import (
    best_chunk_ranking,
    evaluate,
    judged_queries,
    mrr_at,
    ndcg_at,
    recall_at,
)

# q1 has graded judgements, q2 is a perfect hit, q3 finds nothing, q4 has no
# relevant document (grade 0 only), so it is not a judged query.
QRELS = {
    "q1": {"a": 2, "b": 1, "c": 1},
    "q2": {"p": 1},
    "q3": {"z": 1},
    "q4": {"w": 0},
}
RUN = {"q1": ["x", "a", "y", "c"], "q2": ["p"], "q3": [], "q4": ["w"]}

# q1 by hand, ranks 1..4 = x, a, y, c with grades 0, 2, 0, 1:
#   DCG@10  = 0/log2(2) + 2/log2(3) + 0/log2(4) + 1/log2(5)
#           = 0 + 2/1.5849625 + 0 + 1/2.3219281 = 1.2618595 + 0.4306766 = 1.6925361
#   ideal order a, b, c with grades 2, 1, 1:
#   IDCG@10 = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.6309298 + 0.5 = 3.1309298
#   nDCG@10 = 1.6925361 / 3.1309298 = 0.5405858
#   Recall@100 = |{a, c}| / |{a, b, c}| = 2/3;  MRR@10 = 1/2 (first relevant, a, at rank 2)
# q2: nDCG 1, Recall 1, MRR 1.  q3: all 0.
# Means over the three judged queries:
#   nDCG@10 = (0.5405858 + 1 + 0) / 3 = 0.5135286
#   Recall@100 = (2/3 + 1 + 0) / 3 = 0.5555556;  MRR@10 = (0.5 + 1 + 0) / 3 = 0.5


def test_per_query_values_match_the_hand_computation():
    assert ndcg_at(RUN["q1"], QRELS["q1"]) == pytest.approx(0.5405858, abs=1e-7)
    assert recall_at(RUN["q1"], QRELS["q1"]) == pytest.approx(2 / 3)
    assert mrr_at(RUN["q1"], QRELS["q1"]) == 0.5
    assert (ndcg_at(RUN["q2"], QRELS["q2"]), recall_at(RUN["q2"], QRELS["q2"]), mrr_at(RUN["q2"], QRELS["q2"])) == (
        1.0, 1.0, 1.0)
    assert (ndcg_at([], QRELS["q3"]), recall_at([], QRELS["q3"]), mrr_at([], QRELS["q3"])) == (0.0, 0.0, 0.0)


def test_binary_ndcg():
    # ranks 1..3 = r, n, s (r, s relevant): DCG = 1 + 0 + 1/log2(4) = 1.5
    # IDCG = 1 + 1/log2(3) = 1.6309298; nDCG = 1.5 / 1.6309298 = 0.9197208
    assert ndcg_at(["r", "n", "s"], {"r": 1, "s": 1}) == pytest.approx(0.9197208, abs=1e-7)


def test_means_over_judged_queries_only():
    assert judged_queries(QRELS) == ["q1", "q2", "q3"]
    assert evaluate(RUN, QRELS) == {"ndcg@10": 0.5135, "recall@100": 0.5556, "mrr@10": 0.5}
    assert evaluate({}, QRELS) == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}


def test_cutoffs():
    filler = [f"n{i}" for i in range(100)]
    assert recall_at(filler + ["r"], {"r": 1}) == 0.0  # rank 101
    assert recall_at(filler[:99] + ["r"], {"r": 1}) == 1.0  # rank 100
    assert mrr_at(filler[:10] + ["r"], {"r": 1}) == 0.0  # rank 11
    assert ndcg_at(filler[:10] + ["r"], {"r": 1}) == 0.0


def test_a_document_ranks_by_its_best_chunk():
    hits = [("b", 0.5), ("a", 0.9), ("b", 0.7), ("c", 0.7), ("a", 0.1)]
    assert best_chunk_ranking(hits) == ["a", "b", "c"]  # b and c tie at 0.7: first seen first


def test_no_judged_query_is_an_error():
    with pytest.raises(ValueError):
        evaluate({}, {"q": {"d": 0}})
