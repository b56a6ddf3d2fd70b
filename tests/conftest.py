"""Shared fixtures: a tiny generated VOC tree; the real voc_mini subset and ImageNet MobileNetV2
features (when present)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.trained import trained_checkpoint

from fcn.data import VOCDataModule, generate_synthetic_voc

# Fixtures of these modules are available to every test (archives served over HTTP).
pytest_plugins = ["helpers.archive_server"]

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real VOC pairs live beside the repo (../shared/data/voc_mini), never inside it.
VOC_MINI = Path(os.environ.get("FCN_VOC_MINI", REPO_ROOT.parent / "shared" / "data" / "voc_mini"))
# ImageNet MobileNetV2 features in torchvision's layout (no classifier keys), beside the repo too.
MOBILENET_V2_FEATURES = Path(
    os.environ.get(
        "FCN_MOBILENET_V2_WEIGHTS",
        REPO_ROOT.parent / "shared" / "weights" / "mobilenet_v2_imagenet_features.pth",
    )
)

TINY_NUM_TRAIN, TINY_NUM_VAL, TINY_SIZE = 8, 4, (64, 64)


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic VOC tree: 8 train + 4 val pairs, ~64x64 (+-25%), 6 classes. Read-only:
    copy it (shutil.copytree) before changing anything."""
    root = tmp_path_factory.mktemp("tiny_voc") / "VOC"
    return generate_synthetic_voc(root, TINY_NUM_TRAIN, TINY_NUM_VAL, TINY_SIZE, seed=0)


@pytest.fixture
def tiny_datamodule(tiny_voc: Path) -> VOCDataModule:
    """A VOCDataModule over `tiny_voc` for fast CPU tests (64x64 crops, batch 4, no workers)."""
    return VOCDataModule(
        root=str(tiny_voc),
        num_classes=6,
        crop_size=[64, 64],
        batch_size=4,
        val_batch_size=2,
        num_workers=0,
    )


@pytest.fixture(scope="session")
def voc_mini() -> Path:
    """The real 295 train / 269 val VOC 2012 pairs; skips the test where they are absent."""
    if not (VOC_MINI / "ImageSets" / "Segmentation" / "train.txt").is_file():
        pytest.skip(f"voc_mini not found at {VOC_MINI} (set FCN_VOC_MINI)")
    return VOC_MINI


@pytest.fixture(scope="session")
def mobilenet_v2_features() -> Path:
    """The ImageNet MobileNetV2 features-only state dict; skips the test where it is absent."""
    if not MOBILENET_V2_FEATURES.is_file():
        pytest.skip(f"{MOBILENET_V2_FEATURES} not found (set FCN_MOBILENET_V2_WEIGHTS)")
    return MOBILENET_V2_FEATURES


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_voc: Path) -> Path:
    """A ResNet-18 FCN-8s checkpoint trained 3 steps on `tiny_voc` (made once per session)."""
    return trained_checkpoint(tmp_path_factory, tiny_voc)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder for a test module's generated synthetic data (`data.root=`)."""
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for entry-point processes: their own FCN_CACHE."""
    return {"FCN_CACHE": str(tmp_path_factory.mktemp("fcn_cache"))}
