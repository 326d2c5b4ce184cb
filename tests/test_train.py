"""Training: sampling rule, determinism, resume after a kill, checkpoint contents, input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hamnet.train as train_mod
from hamnet.config import LossConfig, ModelConfig, TrainConfig
from hamnet.sampling import sample_snippet_indices
from hamnet.train import load_checkpoint, resume_path, train_hamnet
from tests.hamnet_synth import planted_dataset

TINY = ModelConfig(feature_dim=16, hidden_dim=16, attention_hidden=8, dropout=0.5)
TCFG = TrainConfig(lr=1e-3, batch_size=4, epochs=4, num_snippets=24, seed=3, device="cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    f, l, c, _, _ = planted_dataset(10, num_classes=3, feature_dim=16, seed=0, t_range=(20, 50), seg_range=(4, 8))
    return f, l, c


def _train(data, path, tcfg=TCFG, **kw):
    f, l, c = data
    return train_hamnet(
        f, l, c, model_cfg=TINY, loss_cfg=LossConfig(**kw), train_cfg=tcfg, checkpoint_path=path, progress=False
    )


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_sampling_one_index_per_bin():
    rng = np.random.default_rng(0)
    idx = sample_snippet_indices(1000, 10, rng)
    # bin i is [100 i, 100 (i+1)] (the upper end inclusive, as in the authors' loader)
    assert all(100 * i <= v <= 100 * (i + 1) for i, v in enumerate(idx))
    assert len(set(sample_snippet_indices(1000, 10, np.random.default_rng(1)).tolist()) ^ set(idx.tolist())) > 0
    short = sample_snippet_indices(4, 10, rng)  # short videos repeat indices, in order
    assert len(short) == 10 and short.min() >= 0 and short.max() <= 3 and (np.diff(short) >= 0).all()
    assert sample_snippet_indices(10, 10, rng).tolist() == list(range(10))
    draws = np.stack([sample_snippet_indices(50, 5, np.random.default_rng(s)) for s in range(200)])
    assert draws[:, 4].min() == 40 and draws[:, 4].max() == 49  # last bin runs to the end
    with pytest.raises(ValueError):
        sample_snippet_indices(0, 10, rng)


def test_same_seed_same_weights_and_checkpoint_contents(tmp_path, data):
    a = _train(data, tmp_path / "a.pt")
    b = _train(data, tmp_path / "b.pt")
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = _train(data, tmp_path / "c.pt", TrainConfig(**{**TCFG.to_dict(), "seed": 4}))
    assert not all(torch.equal(wa[k], _weights(c)[k]) for k in wa)
    model, classes, cfg = load_checkpoint(a)
    assert classes == data[2] and cfg["model"] == TINY.to_dict() and cfg["train"]["seed"] == 3
    assert not model.training
    assert not resume_path(a).exists()  # the resume file is removed once training finished
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_training_changes_weights_and_random_drop_mode_is_seeded(tmp_path, data):
    f, l, c = data
    torch.manual_seed(TCFG.seed)
    from hamnet.model import build_hamnet

    init = build_hamnet(TINY, len(c)).state_dict()
    w = _weights(_train(data, tmp_path / "r1.pt", drop_mode="random"))
    assert any(not torch.equal(init[k], w[k]) for k in w)
    w2 = _weights(_train(data, tmp_path / "r2.pt", drop_mode="random"))
    assert all(torch.equal(w[k], w2[k]) for k in w)


class _Killed(Exception):
    pass


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, data, monkeypatch):
    straight = _weights(_train(data, tmp_path / "straight.pt"))
    ckpt = tmp_path / "resumed.pt"

    # Kill 1: right after the resume file of epoch 2 is written.
    def kill_after(epoch):
        if epoch == 2:
            raise _Killed

    monkeypatch.setattr(train_mod, "_after_resume_save", kill_after)
    with pytest.raises(_Killed):
        _train(data, ckpt)
    assert not ckpt.exists() and resume_path(ckpt).exists()
    assert torch.load(resume_path(ckpt), weights_only=True)["epochs_done"] == 2
    monkeypatch.setattr(train_mod, "_after_resume_save", lambda epoch: None)

    # Kill 2: the rerun resumes at epoch 3 (10 videos / batch 4 = 3 batches per epoch), writes
    # epoch 3's resume file, and dies in the second batch of epoch 4 (the 5th loss call).
    calls = {"n": 0}
    real = train_mod.hamnet_losses

    def dying_losses(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise _Killed
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "hamnet_losses", dying_losses)
    with pytest.raises(_Killed):
        _train(data, ckpt)
    assert not ckpt.exists()
    assert torch.load(resume_path(ckpt), weights_only=True)["epochs_done"] == 3
    monkeypatch.setattr(train_mod, "hamnet_losses", real)

    resumed = _weights(_train(data, ckpt))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not resume_path(ckpt).exists()


def test_resume_file_of_other_settings_is_not_used(tmp_path, data, monkeypatch):
    ckpt = tmp_path / "m.pt"

    def kill_after_first(epoch):
        if epoch == 1:
            raise _Killed

    monkeypatch.setattr(train_mod, "_after_resume_save", kill_after_first)
    with pytest.raises(_Killed):
        _train(data, ckpt)
    monkeypatch.setattr(train_mod, "_after_resume_save", lambda e: None)
    other = TrainConfig(**{**TCFG.to_dict(), "lr": 5e-4})
    with pytest.warns(UserWarning, match="other settings"):
        w = _weights(_train(data, ckpt, other))
    fresh = _weights(_train(data, tmp_path / "fresh.pt", other))
    assert all(torch.equal(w[k], fresh[k]) for k in w)


def test_input_errors_name_the_video(tmp_path, data):
    f, l, c = data
    kw = dict(model_cfg=TINY, loss_cfg=LossConfig(), train_cfg=TCFG, checkpoint_path=tmp_path / "x.pt", progress=False)
    empty = dict(f)
    empty["vid003"] = np.zeros((0, 16), np.float32)
    with pytest.raises(ValueError, match=r"'vid003'.*T=0"):
        train_hamnet(empty, l, c, **kw)
    bad = {**l, "vid001": ["NotAClass"]}
    with pytest.raises(ValueError, match=r"'vid001'.*'NotAClass'.*not in the class list"):
        train_hamnet(f, bad, c, **kw)
    with pytest.raises(ValueError, match=r"'ghost' has labels but no features"):
        train_hamnet(f, {**l, "ghost": [c[0]]}, c, **kw)
    wrong_dim = {**f, "vid002": np.ones((30, 8), np.float32)}
    with pytest.raises(ValueError, match=r"'vid002'.*dimension 8"):
        train_hamnet(wrong_dim, l, c, **kw)
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


_TRAIN_SCRIPT = r"""
import sys, torch
torch.set_num_threads(1)
from tests.hamnet_synth import planted_dataset
from hamnet.config import LossConfig, ModelConfig, TrainConfig
from hamnet.train import train_hamnet
f, l, c, _, _ = planted_dataset(10, num_classes=3, feature_dim=16, seed=0, t_range=(20, 50), seg_range=(4, 8))
train_hamnet(f, l, c, model_cfg=ModelConfig(feature_dim=16, hidden_dim=16, attention_hidden=8, dropout=0.5),
             loss_cfg=LossConfig(), train_cfg=TrainConfig(lr=1e-3, batch_size=4, epochs=int(sys.argv[3]),
             num_snippets=24, seed=3, device="cpu"), checkpoint_path=sys.argv[1], progress=False)
"""


@pytest.mark.slow
def test_sigkill_then_rerun_matches_uninterrupted(tmp_path):
    """A real kill (SIGKILL of a training process) instead of a simulated one."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    tests_dir = str(Path(__file__).parent)
    epochs = 300
    straight = tmp_path / "straight.pt"
    subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, str(straight), tests_dir, str(epochs)], check=True)
    ckpt = tmp_path / "killed.pt"
    proc = subprocess.Popen([sys.executable, "-c", _TRAIN_SCRIPT, str(ckpt), tests_dir, str(epochs)])
    deadline = time.time() + 120
    while not resume_path(ckpt).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # let it get a few more epochs in, then kill it wherever it is
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not ckpt.exists(), "the run finished before it could be killed; raise `epochs`"
    done = torch.load(resume_path(ckpt), weights_only=True)["epochs_done"]
    assert 0 < done < epochs
    subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, str(ckpt), tests_dir, str(epochs)], check=True)
    a, b = _weights(straight), _weights(ckpt)
    assert all(torch.equal(a[k], b[k]) for k in a)
    print(f"killed after {done} of {epochs} epochs; resumed run matches")
