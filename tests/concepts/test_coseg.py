"""co_segment against an independent, obviously-correct implementation (docs/method.md §5)."""

import pytest
import torch

from reco.concepts.coseg import block_sizes, co_segment, context_elimination, language_guidance


def naive_coseg(features, weights, n_seeds):
    """The formula written out with Python loops over images, in float64."""
    n, d, h, w = features.shape
    f = features.double()
    unit = f / f.norm(dim=1, keepdim=True)
    scores = torch.zeros(n, h, w, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            # sims[p, q] between pixel p of image i and pixel q of image j, times w_j(q)
            sims = torch.einsum("dp,dq->pq", unit[i].reshape(d, -1), unit[j].reshape(d, -1))
            sims = sims * weights[j].double().reshape(1, -1)
            scores[i] += sims.max(dim=1).values.reshape(h, w)
    scores /= n
    seeds, picked = [], []
    for i in range(n):
        order = sorted(range(h * w), key=lambda k: -scores[i].flatten()[k].item())[:n_seeds]
        seeds.append([(k // w, k % w) for k in order])
        picked += [f[i, :, k // w, k % w] for k in order]
    ref = torch.stack(picked).mean(0)
    return ref / ref.norm(), torch.tensor(seeds), scores


def naive_published(features, weights, n_seeds):
    """The published code's full-matrix computation, slicing bug included."""
    n, d, h, w = features.shape
    flat = features.permute(1, 0, 2, 3).flatten(1).t().double()
    flat = flat / flat.norm(dim=-1, keepdim=True)
    adj = (flat @ flat.t()) * weights.flatten().double()[None]
    grid = torch.zeros(len(adj), n, dtype=torch.float64)
    start = 0
    for j in range(n):
        end = start + h * w
        grid[:, j] = adj[:, start:start + end].max(dim=1).values
        start = end
    scores = grid.mean(1).reshape(n, h, w)
    seeds = scores.flatten(1).topk(n_seeds, dim=1).indices
    return torch.stack([seeds // w, seeds % w], -1), scores


CASES = [(2, 4, 5, 1), (5, 6, 6, 3), (7, 4, 9, 5), (10, 5, 5, 10)]
# (N=1 without weights scores every pixel 1.0, a tie: see test_single_image_scores_are_self_similarity)
WEIGHTED_CASES = [(1, 3, 3, 1), *CASES]


@pytest.mark.parametrize(
    "n, h, w, n_seeds, weighted",
    [(*c, False) for c in CASES] + [(*c, True) for c in WEIGHTED_CASES],
)
def test_matches_naive_formula(n, h, w, n_seeds, weighted):
    g = torch.Generator().manual_seed(n * 100 + h * 10 + w)
    features = torch.randn(n, 16, h, w, generator=g)
    weights = torch.rand(n, h, w, generator=g) if weighted else None
    ref, seeds, scores = naive_coseg(features, weights if weighted else torch.ones(n, h, w), n_seeds)
    result = co_segment(features, weights, n_seeds=n_seeds)
    assert torch.equal(result.seeds, seeds)
    assert (result.reference.double() - ref).abs().max() < 1e-5
    assert (result.scores.double() - scores).abs().max() < 1e-5


@pytest.mark.parametrize("budget", [1, 4096, 10**5, 10**9])
def test_block_sizes_do_not_change_the_result(budget):
    g = torch.Generator().manual_seed(0)
    features, weights = torch.randn(6, 8, 5, 4, generator=g), torch.rand(6, 5, 4, generator=g)
    expected = co_segment(features, weights, n_seeds=2, memory_budget=10**9)
    got = co_segment(features, weights, n_seeds=2, memory_budget=budget)
    assert torch.equal(got.seeds, expected.seeds)
    torch.testing.assert_close(got.scores, expected.scores, atol=1e-6, rtol=0)


def test_block_sizes_respect_the_budget():
    for n, p, budget in [(50, 400, 32 * 2**20), (200, 1024, 32 * 2**20), (3, 9, 1)]:
        rows, images = block_sizes(n, p, budget)
        assert rows * images * p * 4 <= max(budget, p * 4)
        assert 1 <= images <= n and 1 <= rows <= n * p


@pytest.mark.parametrize("n", [1, 2, 3, 6, 9])
def test_published_code_compat_reproduces_the_slicing_bug(n):
    g = torch.Generator().manual_seed(n)
    features, weights = torch.randn(n, 8, 4, 5, generator=g), torch.rand(n, 4, 5, generator=g)
    seeds, scores = naive_published(features, weights, 2)
    result = co_segment(features, weights, n_seeds=2, published_code_compat=True, memory_budget=300)
    assert torch.equal(result.seeds, seeds)
    assert (result.scores.double() - scores).abs().max() < 1e-5


def test_the_bug_changes_scores_for_more_than_two_images():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(6, 8, 4, 4, generator=g)
    fixed = co_segment(features).scores
    buggy = co_segment(features, published_code_compat=True).scores
    assert not torch.allclose(fixed, buggy)


def test_single_image_scores_are_self_similarity():
    features = torch.randn(1, 8, 3, 3)
    result = co_segment(features)
    torch.testing.assert_close(result.scores, torch.ones(1, 3, 3))  # each pixel matches itself


def test_all_zero_weights_give_zero_scores_and_a_defined_reference():
    features = torch.randn(3, 8, 4, 4)
    result = co_segment(features, torch.zeros(3, 4, 4))
    assert torch.equal(result.scores, torch.zeros(3, 4, 4))
    assert torch.isfinite(result.reference).all() and result.seeds.shape == (3, 1, 2)


def test_half_precision_input_is_computed_in_float32():
    features = torch.randn(4, 8, 3, 3)
    a = co_segment(features.half())
    b = co_segment(features.half().float())
    assert a.scores.dtype == torch.float32 and torch.equal(a.scores, b.scores)


def test_seed_mask_restricts_seeds():
    features = torch.randn(3, 8, 4, 4)
    mask = torch.zeros(3, 4, 4, dtype=torch.bool)
    mask[:, 1:3, 0] = True
    result = co_segment(features, n_seeds=2, seed_mask=mask)
    for i in range(3):
        assert all(mask[i, r, c] for r, c in result.seeds[i].tolist())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"features": torch.randn(2, 3, 4)}, r"shape \(N, D, H, W\)"),
        ({"features": torch.full((2, 3, 2, 2), float("nan"))}, "NaN or inf"),
        ({"features": torch.randn(2, 3, 2, 2), "weights": torch.ones(2, 3, 2)}, "weights must have shape"),
        ({"features": torch.randn(2, 3, 2, 2), "weights": torch.full((2, 2, 2), 1.5)}, r"weights must lie in \[0, 1\]"),
        ({"features": torch.randn(2, 3, 2, 2), "n_seeds": 5}, "n_seeds must be"),
        ({"features": torch.randn(2, 3, 2, 2), "n_seeds": 0}, "n_seeds must be"),
        ({"features": torch.randn(0, 3, 2, 2)}, "empty"),
        ({"features": torch.randn(2, 3, 2, 2), "seed_mask": torch.zeros(2, 2, 2, dtype=torch.bool)}, "fewer than n_seeds"),
    ],
)
def test_bad_input_raises_clear_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        co_segment(**kwargs)


def test_language_guidance_formula():
    g = torch.Generator().manual_seed(0)
    dense, text = torch.randn(2, 6, 3, 4, generator=g), torch.randn(6, generator=g)
    got = language_guidance(dense, text)
    for n in range(2):
        for y in range(3):
            for x in range(4):
                v = dense[n, :, y, x]
                cos = (v @ text) / (v.norm() * text.norm())
                assert abs(got[n, y, x] - torch.sigmoid(10 * cos)) < 1e-6
    resized = language_guidance(dense, text, size=(6, 8))
    expected = torch.nn.functional.interpolate(got[:, None], size=(6, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(resized, expected)
    with pytest.raises(ValueError, match="share E"):
        language_guidance(dense, torch.randn(5))


def test_context_elimination_formula():
    g = torch.Generator().manual_seed(1)
    features, refs = torch.randn(2, 5, 3, 3, generator=g), torch.randn(3, 5, generator=g)
    got = context_elimination(features, refs)
    v = features[1, :, 2, 0]
    expected = 1.0
    for r in refs:
        expected *= 1 - torch.sigmoid((v @ r) / (v.norm() * r.norm()))
    assert abs(got[1, 2, 0] - expected) < 1e-6
    assert torch.equal(context_elimination(features, torch.zeros(0, 5)), torch.ones(2, 3, 3))


def test_bench_full_matrix_baseline_agrees_with_co_segment():
    from reco.bench.coseg import full_matrix_coseg

    g = torch.Generator().manual_seed(11)
    features, weights = torch.randn(6, 12, 5, 5, generator=g), torch.rand(6, 5, 5, generator=g)
    ref, seeds, scores = full_matrix_coseg(features, weights)
    ours = co_segment(features, weights)
    assert torch.equal(ours.seeds, seeds)
    torch.testing.assert_close(ours.scores, scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.reference, ref, atol=1e-5, rtol=0)
