"""SciFact evaluation: the metrics by hand, and a small real slice end to end."""

from __future__ import annotations

import math

import pytest
from pharmgpt.rag.eval import evaluate, mrr_at, ndcg_at, recall_at

from tests.fixtures import shared_data

DATA = shared_data("scifact")


def test_metrics_by_hand():
    rel = {"a": 1, "b": 1}
    assert ndcg_at(["a", "x", "b"], rel, 10) == pytest.approx(
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    )
    assert ndcg_at(["x", "y"], rel, 10) == 0.0
    assert recall_at(["x", "a"], rel, 1) == 0.0 and recall_at(["x", "a"], rel, 2) == 0.5
    assert mrr_at(["x", "y", "b"], rel, 10) == pytest.approx(1 / 3)


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/scifact is not beside the checkout")
def test_small_slice_end_to_end(tmp_path):
    from pharmgpt.rag.embeddings import shared_embedder
    from pharmgpt.services.config import Settings

    s = Settings.load()
    embedder = shared_embedder(s.embedder, s.data_dir, s.embedder_threads)

    r = evaluate(
        DATA,
        "test",
        tune=False,
        limit_docs=150,
        limit_queries=15,
        embedder=embedder,
        cache_dir=tmp_path,
    )
    res = r["results"]
    assert set(res) == {"dense", "bm25", "hybrid"} and res["hybrid"]["queries"] == 15
    # on a small corpus every mode should find most relevant abstracts
    for mode in res.values():
        assert mode["recall@100"] >= 0.9 and 0 < mode["ndcg@10"] <= 1
    again = evaluate(
        DATA,
        "test",
        tune=False,
        limit_docs=150,
        limit_queries=15,
        embedder=embedder,
        cache_dir=tmp_path,
    )
    assert again["indexing"]["embeddings_from_cache"] and again["results"] == {
        k: {**v, "ms_per_query": again["results"][k]["ms_per_query"]} for k, v in res.items()
    }
