"""data.gpu_augment: the device path (run here on CPU tensors) crops, scales and flips as the
CPU workers' TrainTransform does: the same draws give the same crops, and independent draws give
the same crop-size, scale and flip distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from fcn.core.classes import VOID_INDEX
from fcn.core.normalization import IMAGENET_MEAN, IMAGENET_STD
from fcn.data import VOCDataModule
from fcn.data.device_augment import (
    DeferredTrainTransform,
    apply_on_device,
    deferred_collate,
    is_deferred_batch,
)
from fcn.data.transforms import TrainTransform

CROP, SCALES = (64, 96), (0.5, 2.0)


def ramp_pair(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose red channel is its column, green its row (sides < 256); no void."""
    image = torch.empty(3, h, w, dtype=torch.uint8)
    image[0] = torch.arange(w).expand(h, w).to(torch.uint8)
    image[1] = torch.arange(h)[:, None].expand(h, w).to(torch.uint8)
    image[2] = 128
    return image, torch.ones(h, w, dtype=torch.uint8)


def cpu_path(image, mask, seed: int):
    torch.manual_seed(seed)
    return TrainTransform(CROP, SCALES)(image, mask)


def device_path(pairs, seeds):
    items = []
    for (image, mask), seed in zip(pairs, seeds):
        torch.manual_seed(seed)
        items.append(DeferredTrainTransform(CROP, SCALES)(image, mask))
    batch = deferred_collate(items)
    assert is_deferred_batch(batch)
    return apply_on_device(*batch, CROP)


def measure(image: torch.Tensor, mask: torch.Tensor) -> tuple[int, int, float, bool]:
    """(content height, width, scale, flipped) read back from a ramp crop."""
    rows, cols = torch.nonzero(mask != VOID_INDEX, as_tuple=True)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    height, width = int(bottom - top + 1), int(right - left + 1)
    red = image[0] * IMAGENET_STD[0] * 255 + IMAGENET_MEAN[0] * 255
    line = red[(top + bottom) // 2, left + 2 : right - 1].numpy()  # edges blur: left out
    slope = np.polyfit(np.arange(len(line)), line, 1)[0] if len(line) > 3 else np.nan
    return height, width, 1.0 / abs(slope), bool(slope < 0)


SIZES = [(80, 120), (40, 50), (120, 200), (64, 96)]  # larger, smaller and equal to the crop


def test_same_draws_give_the_same_crops_on_both_paths():
    pairs = [ramp_pair(*size) for size in SIZES]
    seeds = list(range(len(pairs)))
    images, masks = device_path(pairs, seeds)
    for i, ((image, mask), seed) in enumerate(zip(pairs, seeds)):
        expected_image, expected_mask = cpu_path(image, mask, seed)
        assert torch.equal(images[i], expected_image), SIZES[i]
        assert torch.equal(masks[i], expected_mask), SIZES[i]


def test_crop_size_scale_and_flip_distributions_match():
    n = 240
    pairs = [ramp_pair(*SIZES[i % len(SIZES)]) for i in range(n)]
    cpu = [measure(*cpu_path(image, mask, seed)) for seed, (image, mask) in enumerate(pairs)]
    images, masks = device_path(pairs, range(n, 2 * n))  # independent draws
    dev = [measure(images[i], masks[i]) for i in range(n)]
    cpu_a, dev_a = np.array(cpu, dtype=float), np.array(dev, dtype=float)
    for column, name in enumerate(("crop height", "crop width", "scale")):
        a, b = cpu_a[:, column], dev_a[:, column]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        assert ks_2samp(a, b).pvalue > 0.01, name
    flips_cpu, flips_dev = cpu_a[:, 3].mean(), dev_a[:, 3].mean()
    assert abs(flips_cpu - flips_dev) < 0.15 and abs(flips_dev - 0.5) < 0.12
    scales = dev_a[:, 2][np.isfinite(dev_a[:, 2])]
    # The measurement itself sees the configured range (0.5-2, crops capped at the crop size).
    assert 0.45 < np.quantile(scales, 0.02) < 0.7 and 1.6 < np.quantile(scales, 0.98) < 2.2


def test_datamodule_gpu_augment_gives_the_cpu_paths_batches(tiny_voc):
    def first_batch(gpu_augment: bool):
        dm = VOCDataModule(
            root=str(tiny_voc),
            num_classes=6,
            crop_size=[64, 64],
            batch_size=4,
            num_workers=0,
            gpu_augment=gpu_augment,
        )
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        return dm.on_after_batch_transfer(batch, 0)

    images, masks = first_batch(True)
    expected_images, expected_masks = first_batch(False)
    assert images.dtype == torch.float32 and masks.dtype == torch.uint8
    assert torch.equal(images, expected_images) and torch.equal(masks, expected_masks)
    plain = (expected_images, expected_masks)
    assert (
        VOCDataModule(root=str(tiny_voc), num_classes=6).on_after_batch_transfer(plain, 0) is plain
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the CPU run is above")
@pytest.mark.gpu
def test_device_path_on_cuda_matches_cpu():
    pairs = [ramp_pair(*size) for size in SIZES]
    items = []
    for seed, (image, mask) in enumerate(pairs):
        torch.manual_seed(seed)
        items.append(DeferredTrainTransform(CROP, SCALES)(image, mask))
    images, masks, params = (t.cuda() for t in deferred_collate(items))
    got_images, got_masks = apply_on_device(images, masks, params, CROP)
    for i, (image, mask) in enumerate(pairs):
        expected_image, expected_mask = cpu_path(image, mask, i)
        # CUDA's antialiased resize rounds uint8 its own way: at most 1 level apart.
        assert (got_images[i].cpu() - expected_image).abs().max() <= 1.0 / (255 * 0.224) + 1e-5
        assert (got_masks[i].cpu() != expected_mask).float().mean() < 0.01


def test_lightning_applies_the_device_half_before_training_step(tiny_voc):
    import lightning as L

    from fcn.training.module import SegmentationModule

    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append((len(batch), batch[0].dtype, tuple(batch[0].shape[-2:])))

    dm = VOCDataModule(
        root=str(tiny_voc),
        num_classes=6,
        crop_size=[64, 64],
        batch_size=4,
        num_workers=0,
        gpu_augment=True,
    )
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Probe()],
    )
    trainer.fit(SegmentationModule("resnet18", "fcn8s", 6), datamodule=dm)
    assert seen == [(2, torch.float32, (64, 64))] * 2
