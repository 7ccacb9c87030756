"""FLOP counting of a network window and the datasheet peak table."""

from __future__ import annotations

import pytest
import torch

from medseg.bench import flops


def test_a_convolution_counts_two_flops_per_multiply_add():
    # Conv2d 3 -> 4 channels, 3x3 kernel, padding 1, on 8x10: every output pixel of every output channel takes
    # 3 * 3 * 3 = 27 multiply-adds, so 2 * 27 * 4 * 8 * 10 = 17,280 FLOPs (the bias add is not counted)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    assert flops.network_flops(conv, torch.zeros(1, 3, 8, 10)) == 17_280
    assert flops.flops_per_voxel(conv, (8, 10), in_channels=3) == pytest.approx(17_280 / 80)


def test_a_small_network_adds_its_layers_and_activations_are_free():
    # two 3D convolutions 1 -> 2 (k3, pad 1) and 2 -> 1 (k1) on 4^3 voxels, ReLU between:
    # 2 * (27 * 1 * 2) * 64 + 2 * (1 * 2 * 1) * 64 = 6,912 + 256 = 7,168
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(2, 1, 1))
    assert flops.flops_per_voxel(net, (4, 4, 4)) == pytest.approx(7_168 / 64)
    assert next(net.parameters()).device.type == "cpu"


def test_flops_per_voxel_refuses_a_bad_window():
    with pytest.raises(ValueError, match="window must be 2 or 3 positive sizes"):
        flops.flops_per_voxel(torch.nn.Identity(), (4,))


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.5),  # H100 SXM: 1,979 with sparsity
        ("NVIDIA H100 PCIe", "bf16", 756.5),
        ("NVIDIA H100 PCIe", "fp32", 51.0),
        ("NVIDIA H200", "tf32", 494.5),
        ("NVIDIA H200 NVL", "bf16", 835.5),
        ("NVIDIA GeForce RTX 4090", "bf16", None),
    ],
)
def test_peak_table(name, precision, expected):
    assert flops.peak_tflops(name, precision) == expected


def test_peak_refuses_an_unknown_precision():
    with pytest.raises(ValueError, match="precision must be fp32, tf32, bf16 or fp16, got 'int8'"):
        flops.peak_tflops("NVIDIA H100 PCIe", "int8")
