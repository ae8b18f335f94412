"""``ecgexp.tasks.embeddings``: a linear probe on cached embeddings. A probe trained on the
cache ends with the head a probe running its frozen backbone every epoch ends with (float32
tolerance), the cache is read, not recomputed, by the next run of the same data, network and
weights, and another seed's random encoder gets a cache of its own."""

from __future__ import annotations

import pytest
import torch
from helpers.configs import SHORT_RUN, compose_in

from ecgexp.train import train

PROBE = [*(o for o in SHORT_RUN if not o.startswith("model.")), "model=fcn_wang",
         "model.filters=[8,8,8]", "finetune=linear_probe", "logger=none",
         "callbacks.model_checkpoint.save_last=true"]


def head_of(folder):
    state = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.lin.")}


def test_a_probe_on_cached_embeddings_trains_the_head_the_backbone_would(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGEXP_CACHE_DIR", str(tmp_path / "cache"))
    probe = [*PROBE, f"paths.data_dir={tmp_path / 'data'}"]  # one synthetic dataset for all
    train(compose_in(tmp_path / "cached", *probe))
    [cache] = (tmp_path / "cache" / "embeddings").glob("*.pt")
    train(compose_in(tmp_path / "backbone", *probe, "finetune.cache_embeddings=false"))
    cached, run = head_of(tmp_path / "cached" / "run"), head_of(tmp_path / "backbone" / "run")
    assert set(cached) == {"net.lin.weight", "net.lin.bias"}
    for key in cached:
        torch.testing.assert_close(cached[key], run[key], rtol=1e-4, atol=1e-5)
    stored = torch.load(cache, weights_only=True)
    assert stored["train"].shape[1] == 128  # fcn_wang's neck: 128 features per exam

    def recomputed(*args, **kwargs):
        raise AssertionError("the embeddings were computed again")

    monkeypatch.setattr("ecgexp.tasks.embeddings.embedded", recomputed)
    train(compose_in(tmp_path / "again", *probe))  # the same data, network and weights
    torch.testing.assert_close(head_of(tmp_path / "again" / "run"), cached)
    with pytest.raises(AssertionError, match="computed again"):  # another random encoder
        train(compose_in(tmp_path / "seed", *probe, "seed=1"))
