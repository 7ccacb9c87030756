"""``dice_ce`` equals MONAI's DiceCELoss (the reference a MONAI user has)."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss as MonaiDiceCELoss

from medseg.losses import DiceCELoss, create_loss


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 4, 4, 4)], ids=["2d", "3d"])
def test_equals_monai(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    logits = torch.randn(shape)
    target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]))
    ours = DiceCELoss()(logits, target)
    ref = MonaiDiceCELoss(to_onehot_y=True, softmax=True)(logits, target)
    torch.testing.assert_close(ours, ref)
    weighted = create_loss("dice_ce", lambda_dice=0.3, lambda_ce=2.0)(logits, target)
    ref_w = MonaiDiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.3, lambda_ce=2.0)(logits, target)
    torch.testing.assert_close(weighted, ref_w)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="reduction='none'"):
        DiceCELoss(reduction="none")
    with pytest.raises(ValueError, match="both be 0"):
        DiceCELoss(lambda_dice=0.0, lambda_ce=0.0)
