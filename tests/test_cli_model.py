"""cli.model helpers: the warning for features made with a random (untrained) backbone."""

from __future__ import annotations

import numpy as np
import pytest

from cli.model import warn_random_backbone
from storage.featstore import FeatureStore, write_features


@pytest.fixture
def mixed_store(tmp_path) -> FeatureStore:
    """Four videos; b and d were extracted with a random backbone, a and c with real weights."""
    rng = np.random.default_rng(0)
    for vid, random in (("a_real", False), ("b_rand", True), ("c_real", False), ("d_rand", True)):
        x = rng.normal(size=(5, 8)).astype(np.float32)
        write_features(
            tmp_path / f"{vid}.h5",
            x[:, :4],
            x[:, 4:],
            video_id=vid,
            fps=25.0,
            frames_per_snippet=16,
            n_frames=80,
            duration=3.2,
            source=f"{vid}.mp4",
            random_backbone=random,
        )
    return FeatureStore(tmp_path)


def test_warns_with_count_and_an_example(mixed_store, capsys):
    warn_random_backbone(mixed_store, list(mixed_store))
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "warning: 2 of 4 videos have features from a RANDOM (untrained) backbone (e.g. b_rand); "
        "the model and its detections are not meaningful\n"
    )
    warn_random_backbone(mixed_store, ["d_rand", "a_real"])  # the example is the first one given
    err = capsys.readouterr().err
    assert err.startswith("warning: 1 of 2 videos ") and "(e.g. d_rand)" in err and err.count("\n") == 1


def test_silent_for_real_features(mixed_store, capsys):
    # Only the videos asked about are read: the random ones beside them do not matter.
    warn_random_backbone(mixed_store, ["a_real", "c_real"])
    assert capsys.readouterr() == ("", "")
