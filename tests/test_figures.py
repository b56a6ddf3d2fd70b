import torch

from fcn.core.normalization import IMAGENET_MEAN, IMAGENET_STD
from fcn.training.figures import colorize, prediction_row


def _sample(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    image = (torch.rand(3, h, w) - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(3, 1, 1)
    target = torch.randint(0, 21, (h, w))
    target[:3] = 255
    return image, target, torch.randint(0, 21, (h, w))


def test_prediction_row_full_size_is_input_truth_prediction() -> None:
    image, target, pred = _sample(30, 40)
    row = prediction_row(image, target, pred)
    assert row.shape == (3, 30, 120) and row.dtype == torch.uint8
    assert torch.equal(row[:, :, 40:80], colorize(target))
    assert torch.equal(row[:, :, 80:], colorize(pred))


def test_prediction_row_shrinks_to_max_side_keeping_class_colours_exact() -> None:
    image, target, pred = _sample(375, 500)
    row = prediction_row(image, target, pred, max_side=320)
    assert row.shape == (3, 240, 960)
    palette = {tuple(c) for c in colorize(torch.arange(256)[None]).squeeze(1).T.tolist()}
    for panel in (row[:, :, 320:640], row[:, :, 640:]):
        colours = {tuple(c) for c in panel.flatten(1).T.tolist()}
        assert colours <= palette  # nearest: no blended label colours
    assert prediction_row(image[:, :64, :64], target[:64, :64], pred[:64, :64], 320).shape == (
        3,
        64,
        192,
    )
