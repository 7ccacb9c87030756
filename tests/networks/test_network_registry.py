"""Registry sweep: every registered network gets forward, backward, every-parameter-gradient and NaN checks."""

from __future__ import annotations

import pytest
import torch

from medseg.networks import NETWORKS, create_network


def test_the_designed_names_are_registered() -> None:
    assert {"coplenet", "coplenet_small"} <= set(NETWORKS.names())


@pytest.mark.parametrize("name", NETWORKS.names())
def test_registered_network_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    net = create_network(name, spatial_dims=2, in_channels=1, out_channels=3).train()
    x = torch.randn(2, 1, 32, 32)
    out = net(x)
    assert out.shape == (2, 3, 32, 32)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).mean().backward()
    no_grad = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    bad = [n for n, p in net.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert bad == []


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(KeyError, match="Did you mean 'coplenet'"):
        create_network("copelnet")
