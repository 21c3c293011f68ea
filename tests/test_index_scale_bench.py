"""`reco bench index --scale`, run small: each step in its own process, measured, and the JSON
the issue asks for."""

import json

import pytest


@pytest.mark.slow  # eight processes and a small IVF-PQ build: ~2 min
def test_scale_bench_builds_serves_and_reports(tmp_path):
    from reco.bench import index_scale

    small = {"vectors": 5000, "dim": 16, "shard_size": 1000, "part_rows": 1000, "workdir": tmp_path / "work"}
    result = index_scale.run(**small)
    for key in ("vectors", "build_peak_rss_gb", "serve_peak_rss_gb", "recall_at_50", "bytes_per_vector",
                "queries_per_s"):
        assert key in result
    assert result["vectors"] == 5000 and result["ivfpq"]["parts"] == 5 and result["ivfpq"]["lists"] == "on-disk"
    assert 0.5 < result["recall_at_50"] <= result["recall_at_50_rerank_200"] <= 1.0
    assert 0.05 < result["build_peak_rss_gb"] < 4 and 0.05 < result["serve_peak_rss_gb"] < 2
    # 16 one-byte codes and an 8-byte id a vector, plus the trained pipeline and list headers
    assert 24 <= result["bytes_per_vector"] < 24 + 40
    assert result["queries_per_s"] > 0
    assert set(result["steps"]) == {"generate", "build", "serve", "truth"}
    json.dumps(result)  # what run_suite saves
    again = index_scale.run(**small)  # resumes: nothing left to build
    assert again["ivfpq"] == result["ivfpq"] and again["recall_at_50"] == result["recall_at_50"]
