"""Tests of NeuroIoU's training side: collecting statistics from a CE-trained model and fitting the surrogate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.losses import NeuroIoULoss
from medseg.losses import neuroiou as nio
from medseg.training import fit_neuroiou_surrogate, fit_neuroiou_surrogate_on_statistics


def test_fit_on_statistics_and_validation():
    x, y = nio.sample_neuroiou_statistics(1024, features="prob3", seed=5)
    model = fit_neuroiou_surrogate_on_statistics(x, y, features="prob3", hidden=(32,), steps=0)
    assert model.fit_info["rmse"] < 0.06
    tuned = fit_neuroiou_surrogate_on_statistics(x, y, features="prob3", hidden=(32,), steps=5, lr=1e-3)
    assert tuned.fit_info["rmse"] < 0.06
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match=r"x must be \(M, 6\)"):
        fit_neuroiou_surrogate_on_statistics(x, y, features="prob6")
    with pytest.raises(ValueError, match="one target per row"):
        fit_neuroiou_surrogate_on_statistics(x, y[:10], features="prob3")
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        fit_neuroiou_surrogate_on_statistics(x, y, features="prob3", steps=-1)


def test_zero_steps_is_the_closed_form_fit():
    # steps=0 stops at the random-feature start, which is exactly the loss module's closed-form fit
    x, y = nio.sample_neuroiou_statistics(512, seed=2)
    fitted = fit_neuroiou_surrogate_on_statistics(x, y, hidden=(16,), steps=0, seed=4)
    closed = nio.random_feature_surrogate(x, y, hidden=(16,), seed=4)
    assert fitted.to_dict() == closed.to_dict()


def test_fit_on_a_ce_trained_model_then_fine_tune(tmp_path):
    # the paper's protocol on a toy problem: label = [image > 0]; CE training, surrogate fitted on the model's
    # outputs, saved, reloaded by path, and fine-tuning with it lowers the NeuroIoU loss
    g = torch.Generator().manual_seed(0)
    images = torch.randn(16, 1, 12, 12, generator=g)
    labels = (images + 0.3 * torch.randn(16, 1, 12, 12, generator=g) > 0.4).long()
    loader = [{"image": images[i : i + 4], "label": labels[i : i + 4]} for i in range(0, 16, 4)]
    with nio.seeded(0):
        net = torch.nn.Conv2d(1, 2, 3, padding=1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(6):
        for batch in loader:
            opt.zero_grad()
            F.cross_entropy(net(batch["image"]), batch["label"][:, 0]).backward()
            opt.step()
    surrogate = fit_neuroiou_surrogate(net, loader, hidden=(32,), steps=0)
    assert surrogate.fit_info["num_samples"] == 32  # 16 images x 2 classes, all defined
    assert net.training  # the model's mode is restored
    path = tmp_path / "neuroiou.json"
    surrogate.save(path)
    loss = NeuroIoULoss(str(path))

    def total():
        with torch.no_grad():
            return sum(float(loss(net(b["image"]), b["label"])) for b in loader)

    before = total()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(3):
        for batch in loader:
            opt.zero_grad()
            loss(net(batch["image"]), batch["label"]).backward()
            opt.step()
    assert total() < before
