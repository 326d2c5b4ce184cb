"""The six HAM-Net losses on small hand-worked cases, in both readings, plus top-k and drop modes.

Expected numbers are worked out by hand in the comments (top-k columns, targets, masks) and
only the final log-sum-exp is left to ``math``; nothing here calls the code under test to
produce an expected value.
"""

from __future__ import annotations

import math

import pytest
import torch

from hamnet.config import LossConfig, LossWeights
from hamnet.losses import drop_mask, hamnet_losses, topk_k

# B=1, T=4, C=2 (+ background last). k = max(1, 4 // 2) = 2 with topk_ratio 2.
S = torch.tensor([[[2.0, 0.5, 1.0], [0.0, 1.0, -1.0], [1.0, 3.0, 0.5], [-1.0, 0.0, 2.0]]], dtype=torch.float64)
A = torch.tensor([[0.9, 0.1, 0.5, 0.05]], dtype=torch.float64)
Y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
# Both readings drop t0 and t2 here: authors a >= 0.2 * 0.9 = 0.18, paper a >= 0.2.

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lse(v):
    return math.log(sum(math.exp(x) for x in v))


def bg_prob(row):
    return math.exp(row[-1]) / sum(math.exp(x) for x in row)


def cfg(reading, **w):
    weights = LossWeights(**w) if w else LossWeights()
    return LossConfig(reading=reading, topk_ratio=2, drop_threshold=0.2, drop_mode="selective", weights=weights)


S_ROWS = [[2.0, 0.5, 1.0], [0.0, 1.0, -1.0], [1.0, 3.0, 0.5], [-1.0, 0.0, 2.0]]
A_VALS = [0.9, 0.1, 0.5, 0.05]
GUIDE_T = [abs(1 - a - bg_prob(r)) for a, r in zip(A_VALS, S_ROWS)]

# BCL: top-2 means of s per column: c0 {2, 1} -> 1.5, c1 {3, 1} -> 2.0, bg {2, 1} -> 1.5.
#   target (authors) [1, 0, 1] / 2.0001; loss = (2 lse - 1.5 - 1.5) / 2.0001.
BCL_V = [1.5, 2.0, 1.5]
# HAL authors: t0, t2 dropped -> their rows become their min (0.5): [.5,.5,.5];
#   columns c0 [.5, 0, .5, -1] -> .5; c1 [.5, 1, .5, 0] -> .75; bg [.5, -1, .5, 2] -> 1.25.
HAL_V_AUTHORS = [0.5, 0.75, 1.25]
# HAL paper: dropped rows zeroed: c0 [0,0,0,-1] -> 0; c1 [0,1,0,0] -> .5; bg [0,-1,0,2] -> 1.
HAL_V_PAPER = [0.0, 0.5, 1.0]
# SAL (both): a*s rows t0 [1.8,.45,.9], t1 [0,.1,-.1], t2 [.5,1.5,.25], t3 [-.05,0,.1]
#   c0 {1.8,.5} -> 1.15; c1 {1.5,.45} -> .975; bg {.9,.25} -> .575. target [1,0,0] (/1.0001).
SAL_V = [1.15, 0.975, 0.575]
# SSAL authors: a_drop = [0, .1, 0, .05]; rows a_drop*(s - min) + min:
#   t0 [.5,.5,.5]; t1 .1*[1,2,0]-1 = [-.9,-.8,-1]; t2 [.5,.5,.5]; t3 .05*[0,1,3]-1 = [-1,-.95,-.85]
#   every column's top-2 mean is .5 -> uniform softmax -> loss = log 3 / 1.0001.
SSAL_V_AUTHORS = [0.5, 0.5, 0.5]
# SSAL paper: a_drop*s: t0 0; t1 [0,.1,-.1]; t2 0; t3 [-.05,0,.1]
#   c0 [0,0,0,-.05] -> 0; c1 [0,.1,0,0] -> .05; bg [0,-.1,0,.1] -> .05.
SSAL_V_PAPER = [0.0, 0.05, 0.05]


def test_authors_reading_by_hand():
    out = hamnet_losses(S, A, Y, cfg("authors"))
    exp = {
        "bcl": (2 * lse(BCL_V) - 1.5 - 1.5) / 2.0001,
        "hal": (2 * lse(HAL_V_AUTHORS) - 0.5 - 1.25) / 2.0001,
        "sal": (lse(SAL_V) - 1.15) / 1.0001,
        "ssal": math.log(3) / 1.0001,
        "sparsity": (0.9 + 0.1 + 0.5 + 0.05) / 4,
        "guide": sum(GUIDE_T) / 4,
    }
    for k, v in exp.items():
        assert out[k].item() == pytest.approx(v, rel=1e-9), k
    total = (
        0.8 * exp["bcl"]
        + 0.2 * exp["hal"]
        + 0.8 * exp["sal"]
        + 0.2 * exp["ssal"]
        + 0.8 * exp["sparsity"]
        + 0.8 * exp["guide"]
    )
    assert out["total"].item() == pytest.approx(total, rel=1e-9)


def test_paper_reading_by_hand():
    out = hamnet_losses(S, A, Y, cfg("paper"))
    exp = {
        "bcl": 2 * lse(BCL_V) - 3.0,  # raw targets [1, 0, 1]
        "hal": 2 * lse(HAL_V_PAPER) - 0.0 - 1.0,
        "sal": lse(SAL_V) - 1.15,
        "ssal": lse(SSAL_V_PAPER) - 0.0,
        "sparsity": 0.9 + 0.1 + 0.5 + 0.05,  # summed over T
        "guide": sum(GUIDE_T),
    }
    for k, v in exp.items():
        assert out[k].item() == pytest.approx(v, rel=1e-9), k


def test_readings_differ_where_documented():
    a = hamnet_losses(S, A, Y, cfg("authors"))
    p = hamnet_losses(S, A, Y, cfg("paper"))
    for k in ("bcl", "hal", "ssal", "sparsity", "guide"):
        assert a[k].item() != pytest.approx(p[k].item(), rel=1e-6), k


def test_weights_zero_switch_terms_off():
    out = hamnet_losses(S, A, Y, cfg("authors", bcl=0, hal=0, sal=0, ssal=0, sparsity=0, guide=2.0))
    assert out["total"].item() == pytest.approx(2.0 * sum(GUIDE_T) / 4, rel=1e-9)
    # switched-off terms are still reported
    assert out["bcl"].item() > 0
    # A term that is off does not poison the total even if it is not finite.
    s = S.clone()
    s[0, 0, 0] = float("inf")
    out = hamnet_losses(s, A, Y, cfg("authors", bcl=0, hal=0, sal=0, ssal=0, sparsity=1.0, guide=0))
    assert out["total"].item() == pytest.approx(1.55 / 4)
    with pytest.raises(ValueError, match="at least one weight"):
        LossWeights.from_dict({"bcl": 0, "hal": 0, "sal": 0, "ssal": 0, "sparsity": 0, "guide": 0})


def test_topk_rule():
    assert [topk_k(T, 10) for T in (1, 9, 10, 25, 500, 5000)] == [1, 1, 1, 2, 50, 500]
    assert topk_k(80, 20) == 4
    # Through the loss: with T=9 and ratio 10 only the single largest snippet counts (k=1),
    # so lowering every other snippet changes nothing; with T=25 (k=2) the second one counts.
    c = LossConfig(topk_ratio=10, weights=LossWeights(1, 0, 0, 0, 0, 0))
    y = torch.tensor([[1.0]])
    for T, k in ((9, 1), (25, 2)):
        s = torch.zeros(1, T, 2)
        s[0, 0, 0] = 4.0
        s[0, 1, 0] = 2.0
        a = torch.full((1, T), 0.5)
        # c0 top-k mean: k=1 -> 4; k=2 -> 3. bg column all 0. target [1,1]/2.0001
        m = 4.0 if k == 1 else 3.0
        want = (2 * lse([m, 0.0]) - m) / 2.0001
        assert hamnet_losses(s, a, y, c)["bcl"].item() == pytest.approx(want, rel=1e-6)


def test_drop_mask_relative_vs_absolute():
    a = torch.tensor([[0.5, 0.12, 0.09, 0.3]])
    # authors: threshold 0.2 * 0.5 = 0.1 -> drops 0.5, 0.12, 0.3; paper: a >= 0.2 -> 0.5, 0.3
    assert drop_mask(a, LossConfig(reading="authors")).tolist() == [[True, True, False, True]]
    assert drop_mask(a, LossConfig(reading="paper")).tolist() == [[True, False, False, True]]
    # the comparison is inclusive (a >= threshold)
    assert drop_mask(torch.tensor([[0.2, 0.1]]), LossConfig(reading="paper")).tolist() == [[True, False]]


def test_drop_modes():
    a = torch.tensor([[0.9, 0.05, 0.6, 0.1, 0.02, 0.7, 0.03, 0.04], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]])
    # paper reading, gamma 0.5: row 0 drops {0.9, 0.6, 0.7} (3), row 1 drops {.5,.6,.7,.8} (4)
    sel = drop_mask(a, LossConfig(reading="paper", drop_threshold=0.5, drop_mode="selective"))
    assert sel.tolist() == [
        [True, False, True, False, False, True, False, False],
        [False, False, False, False, True, True, True, True],
    ]
    inv = drop_mask(a, LossConfig(reading="paper", drop_threshold=0.5, drop_mode="inverse"))
    # the 3 (resp. 4) least attended: row 0 {.02, .03, .04}, row 1 {.1, .2, .3, .4}
    assert inv.tolist() == [
        [False, False, False, False, True, False, True, True],
        [True, True, True, True, False, False, False, False],
    ]
    rcfg = LossConfig(reading="paper", drop_threshold=0.5, drop_mode="random")
    r1 = drop_mask(a, rcfg, torch.Generator().manual_seed(1))
    r1b = drop_mask(a, rcfg, torch.Generator().manual_seed(1))
    assert torch.equal(r1, r1b)  # reproducible with the generator
    assert r1.sum(dim=1).tolist() == [3, 4]  # same count as selective
    draws = {tuple(drop_mask(a, rcfg, torch.Generator().manual_seed(s))[0].tolist()) for s in range(20)}
    assert len(draws) > 5  # really random: many different subsets over seeds
    # inverse mode changes what HAL sees: with the high-attention snippets kept, HAL differs
    l_sel = hamnet_losses(S, A, Y, LossConfig(reading="authors", topk_ratio=2, drop_mode="selective"))
    l_inv = hamnet_losses(S, A, Y, LossConfig(reading="authors", topk_ratio=2, drop_mode="inverse"))
    # inverse drops the 2 least attended (t1, t3): HAL rows t1 -> [-1,-1,-1], t3 -> [-1,-1,-1]
    # columns c0 [2,-1,1,-1] -> 1.5; c1 [.5,-1,3,-1] -> 1.75; bg [1,-1,.5,-1] -> .75
    assert l_inv["hal"].item() == pytest.approx((2 * lse([1.5, 1.75, 0.75]) - 1.5 - 0.75) / 2.0001, rel=1e-6)
    assert l_inv["bcl"].item() == pytest.approx(l_sel["bcl"].item())


def test_gradients_reach_attention_through_soft_terms_only():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 20, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    a = torch.rand(2, 20, generator=g, dtype=torch.float64).requires_grad_(True)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    c = LossConfig(drop_threshold=0.9)  # few snippets dropped, so kept ones reach the top-k
    for term, reaches_a in (
        ("bcl", False),
        ("hal", False),
        ("sal", True),
        ("ssal", True),
        ("sparsity", True),
        ("guide", True),
    ):
        s.grad = a.grad = None
        hamnet_losses(s, a, y, c)[term].backward()
        got_a = a.grad is not None and a.grad.abs().sum().item() > 0
        assert got_a == reaches_a, term
        if term != "sparsity":
            assert s.grad is not None and s.grad.abs().sum().item() > 0, term


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="shape mismatch"):
        hamnet_losses(S, A, torch.zeros(1, 3, dtype=torch.float64), LossConfig())
