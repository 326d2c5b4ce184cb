"""Thread budget (core.threads, extractors.budget): never more compute threads than the budget,
and I3D's thread count independent of how the flow is obtained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.threads import BUDGET_ENV, cpu_budget, torch_threads, usable_cores
from extractors.budget import i3d_threads, plan_extraction
from extractors.settings import ExtractSettings
from extractors.video_features import extract_video_features
from tests.test_extract import FAST, clip, models  # noqa: F401  (module fixtures)


@pytest.mark.parametrize("backend", ["opencv", "fused"])
@pytest.mark.parametrize("budget", [1, 2, 3, 4, 8, 16, 64])
def test_cpu_plan_stays_within_budget_and_overlaps(backend: str, budget: int):
    s = ExtractSettings(flow_backend=backend)
    plan = plan_extraction(s, "cpu", budget=budget)
    assert plan.compute_threads <= budget
    assert plan.flow_workers >= 1 and plan.i3d_threads >= 1
    if budget > 1:  # both stages run at once, each on its own cores
        assert plan.background and plan.flow_workers + plan.i3d_threads == budget


@pytest.mark.parametrize("budget", [1, 2, 6])
def test_i3d_threads_do_not_depend_on_flow_workers_or_cache(budget: int):
    """Features must be bit-identical whether flow is cached or computed, with any flow_workers."""
    base = ExtractSettings(flow_backend="fused")
    expected = i3d_threads(base, "cpu", budget)
    for workers in (0, 1, 3):
        s = base.replace(flow_workers=workers)
        for cached in (False, True):
            assert plan_extraction(s, "cpu", flow_cached=cached, budget=budget).i3d_threads == expected


def test_gpu_plan_gives_flow_the_whole_budget_and_torch_backend_runs_inline():
    plan = plan_extraction(ExtractSettings(flow_backend="fused"), "cuda", budget=8)
    assert (plan.flow_workers, plan.background, plan.i3d_threads) == (8, True, 1)
    plan = plan_extraction(ExtractSettings(flow_backend="torch"), "cpu", budget=4)
    assert (plan.background, plan.i3d_threads) == (False, 4)


def test_budget_from_environment(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert cpu_budget() == usable_cores() >= 1
    monkeypatch.setenv(BUDGET_ENV, "3")
    assert cpu_budget() == 3
    assert ExtractSettings().num_flow_workers == 3  # flow caching alone takes the whole budget
    for bad in ("0", "two"):
        monkeypatch.setenv(BUDGET_ENV, bad)
        with pytest.raises(ValueError, match=BUDGET_ENV):
            cpu_budget()


def test_torch_threads_is_scoped():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.filterwarnings("ignore:.*RANDOM I3D backbone")
def test_fused_extraction_follows_the_plan_and_matches_opencv(clip, models, monkeypatch):  # noqa: F811
    monkeypatch.setenv(BUDGET_ENV, "2")
    fused = extract_video_features(clip, ExtractSettings(**FAST, flow_backend="fused"), models=models, progress=False)
    assert fused.timings["flow_workers"] == 1 and fused.timings["i3d_threads"] == 1
    ref = extract_video_features(clip, ExtractSettings(**FAST), models=models, progress=False)
    # Same TV-L1 arithmetic as OpenCV (bit-identical flow on x86-64 here): same features.
    np.testing.assert_allclose(fused.flow, ref.flow, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(fused.rgb, ref.rgb)
