"""`reco bench index --scale`, run small: each step in its own process, measured, and the JSON
the issue asks for."""

import json

import pytest


@pytest.mark.slow  # ten processes and a small IVF-PQ build: ~2 min
def test_scale_bench_builds_serves_and_reports(tmp_path):
    from reco.bench import index_scale

    small = {"vectors": 5000, "dim": 16, "shard_size": 1000, "part_rows": 1000, "workdir": tmp_path / "work"}
    result = index_scale.run(**small)
    for key in ("vectors", "build_peak_rss_gb", "serve_peak_rss_gb", "recall_at_50", "bytes_per_vector",
                "queries_per_s"):
        assert key in result
    assert result["vectors"] == 5000 and result["ivfpq"]["parts"] == 5 and result["ivfpq"]["lists"] == "on-disk"
    # 16 dims: PQ16 is one byte a dimension like the re-ranking codes, so re-ranking gains little here
    assert 0.5 < result["recall_at_50_without_rerank"] <= 1.0 and 0.9 <= result["recall_at_50"] <= 1.0
    assert 0.05 < result["build_peak_rss_gb"] < 4 and 0.05 < result["serve_peak_rss_gb"] < 2
    # 16 one-byte codes and an 8-byte id a vector, plus the trained pipeline and list headers
    assert 24 <= result["bytes_per_vector"] < 24 + 40
    assert result["queries_per_s"] > 0 and result["steps"]["serve"]["first_search_seconds"] > 0
    # one byte a dimension, plus the .npy header and the quantiser's range
    assert 16 <= result["folder_bytes_per_vector"]["re-ranking codes (8-bit)"] < 16 + 2
    assert set(result["steps"]) == {"generate", "build", "serve", "curve", "truth"}
    assert result["generator"]["name"].startswith("overlapping Gaussian mixture") and result["generator"]["dim"] == 16
    curve = {p["nprobe"]: p for p in result["recall_curve"]}
    assert result["ivfpq"]["nlist"] == 16 and list(curve) == [1, 2, 4, 8, 16]  # every nprobe up to nlist
    for p in curve.values():
        assert p["faiss_qps"] > 0 and p["serve_qps"] > 0 and p["serve_over_faiss"] == p["serve_qps"] / p["faiss_qps"]
        assert 0 < p["recall_at_50_without_rerank"] <= 1 and 0 < p["recall_at_50"] <= 1
    # the served search at the default nprobe is the curve's point there: same queries, same answers
    assert curve[result["default_nprobe"]]["recall_at_50"] == result["recall_at_50"]
    assert all(p["serve_without_rerank_over_faiss_top_k"] > 0 for p in curve.values())
    assert result["default_rerank"] == 300 and curve[16]["recall_at_50"] > curve[1]["recall_at_50"]
    first = next(p for p in curve.values() if p["recall_at_50"] >= 0.9)
    assert (result["nprobe_for_recall_0.9"], result["serve_over_faiss_at_0.9"]) == \
        (first["nprobe"], first["serve_over_faiss"])
    json.dumps(result)  # what run_suite saves
    again = index_scale.run(**small)  # resumes: nothing left to build
    assert again["ivfpq"] == result["ivfpq"] and again["recall_at_50"] == result["recall_at_50"]
