"""Shared pieces of scripts/benchmark.py's measurements: sizes, timing helpers, setups.

Settings (FULL, QUICK) holds every measurement's sizes and repetition counts; `log`, `loadavg`
and `median` are the timing helpers; `machine_info` records what a run was measured on; the
rest build what several measurements use alike: the default run's Trainer and module, a
hand-written training step (`PlainStepper`) and the VOC tree to read images from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# The default run's model (conf/train.yaml) and the benchmark's crop size.
BACKBONE, HEAD = "resnet18", "fcn8s"
VOC_CROP = (320, 480)
VOC_IMAGE_SIZE = (375, 500)  # [height, width] of a typical VOC image (synthetic fallback)


@dataclass(frozen=True)
class Settings:
    """Sizes and repetition counts of one benchmark mode."""

    # framework overhead: the default training run's shapes (conf/data/synthetic.yaml)
    fw_batch: int
    fw_size: tuple[int, int]
    fw_classes: int
    fw_warmup: int
    fw_steps: int
    fw_block: int
    # data loading
    loader_images: int | None  # None: the whole train split
    loader_epochs: int  # timed epochs after one warm-up epoch
    # training throughput at batch 8 on VOC crops
    train_crop: tuple[int, int]
    train_warmup: int
    train_steps: int
    # whole-image evaluation
    eval_images: int | None  # None: the whole val split
    eval_rounds: int
    # forward vs the seed's Sequential
    seed_size: tuple[int, int]
    seed_warmup: int
    seed_reps: int
    # peak RSS of python -m fcn.train
    rss_overrides: tuple[str, ...]
    rss_note: str


FULL = Settings(
    fw_batch=16,
    fw_size=(128, 128),
    fw_classes=6,
    fw_warmup=5,
    fw_steps=60,
    fw_block=10,  # log_every_n_steps: every block holds one periodic logger write
    loader_images=None,
    loader_epochs=4,
    train_crop=VOC_CROP,
    train_warmup=1,
    train_steps=3,
    eval_images=None,
    eval_rounds=2,
    seed_size=VOC_CROP,
    seed_warmup=3,
    seed_reps=30,
    rss_overrides=("trainer.max_epochs=1",),
    rss_note="python -m fcn.train trainer.max_epochs=1 (defaults otherwise: synthetic data, "
    "FCN-8s/ResNet-18, batch 16, 2 workers, val + test); capped at 1 of the 8 default epochs",
)

QUICK = Settings(
    fw_batch=2,
    fw_size=(64, 64),
    fw_classes=6,
    fw_warmup=1,
    fw_steps=4,
    fw_block=2,
    loader_images=16,
    loader_epochs=1,
    train_crop=(64, 96),
    train_warmup=1,
    train_steps=1,
    eval_images=2,
    eval_rounds=1,
    seed_size=(64, 96),
    seed_warmup=1,
    seed_reps=2,
    rss_overrides=(
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "data.batch_size=2",
        "data.synthetic.num_train=8",
        "data.synthetic.num_val=2",
        "data.synthetic.size=[64,64]",
        "data.crop_size=[64,64]",
    ),
    rss_note="--quick: python -m fcn.train on a tiny budget (2 train/val/test batches of 2, "
    "64x64 synthetic data); not representative",
)


def log(msg: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---- machine ----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import lightning
    import torch
    import torchvision

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count() or 0,
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ---- shared pieces ----------------------------------------------------------------------------


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def make_trainer(root: Path, **kw: Any):
    """A Trainer as real runs use it (TensorBoard logging) minus progress bar and checkpoints."""
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(str(root), name="tensorboard", default_hp_metric=False),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        **kw,
    )


def make_module(num_classes: int, head: str = HEAD):
    from fcn.training.module import SegmentationModule

    # conf/optimizer/sgd.yaml and conf/scheduler/poly.yaml
    return SegmentationModule(
        backbone=BACKBONE,
        head=head,
        num_classes=num_classes,
        optimizer={
            "name": "sgd",
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "backbone_lr_mult": 1.0,
        },
        scheduler={"name": "poly", "power": 0.9, "warmup_steps": 0},
    )


class ListDataset:
    """Items of a list (torch's Dataset protocol); batch_size=None hands them over as they are."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


class PlainStepper:
    """The hand-written training step Lightning is measured against: same loss, optimizer
    (conf/optimizer/sgd.yaml) and per-step poly schedule (conf/scheduler/poly.yaml)."""

    def __init__(self, model, total_steps: int) -> None:
        from fcn.training.optim import build_optimizer, build_scheduler

        opt_cfg = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
        self.model = model.train()
        self.optimizer = build_optimizer(model.backbone, model.head, **opt_cfg)
        self.scheduler = build_scheduler(
            self.optimizer, total_steps, total_steps, name="poly", power=0.9
        )

    def step(self, images, masks) -> float:
        import torch.nn.functional as F

        from fcn.core.classes import VOID_INDEX

        loss = F.cross_entropy(self.model(images), masks.long(), ignore_index=VOID_INDEX)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()  # Lightning reads the loss back for logging every step, so do we


def voc_tree(voc_root: Path, work: Path) -> tuple[Path, int, str]:
    """(VOC root, number of classes, description): voc_mini, else generated 500x375 JPEGs."""
    if (voc_root / "ImageSets" / "Segmentation" / "train.txt").is_file():
        return voc_root, 21, f"real VOC 2012 JPEGs at {voc_root}"
    from fcn.data import SYNTHETIC_CLASSES, ensure_synthetic_voc

    log(f"{voc_root} not found: generating synthetic {VOC_IMAGE_SIZE} JPEGs")
    root = ensure_synthetic_voc(work / "synthetic", 147, 142, VOC_IMAGE_SIZE, seed=0)
    return root, len(SYNTHETIC_CLASSES), f"synthetic ~500x375 JPEGs ({voc_root} absent)"
