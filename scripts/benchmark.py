#!/usr/bin/env python
"""Performance benchmark: framework overhead, data loading, evaluation, head overhead, memory.

    python scripts/benchmark.py [--quick] [--out FILE] [--voc-root DIR] [--threads N]

Prints one JSON object on stdout (progress goes to stderr) and writes it to --out. Every
timing is a median over repetitions taken after warm-up; where two things are compared they
are measured alternately in the same process, so background load hits both alike.

  framework_ratio        Trainer.fit throughput / plain PyTorch loop (same model, optimizer,
                         poly schedule, in-memory batches, thread count)         target >= 0.95
  loader_images_per_s    training DataLoader over real VOC JPEGs, 2 workers     target >= 150
  loader_to_train_ratio  loader / FCN-8s ResNet-18 batch-8 training throughput  target >= 3
  eval_to_forward_ratio  Trainer.validate (batch 1, whole image, metrics) /
                         bare no_grad forward on the same tensors                target >= 0.9
  forward_ratio_vs_seed  our FCN-32s ResNet-18 forward / the seed's nn.Sequential target >= 0.97
  peak_rss_mb            `python -m fcn.train` (defaults, capped), measured from outside
                                                                                 target <= 3000
  realdata_val_mIoU      experiment=voc_mobilenet_cpu on voc_mini (scripts/bench_realdata.py;
                         ~12 min, only with --only realdata)  target >= 0.35 within 900 s
  predict_images_per_s_torch / _onnx, predict_to_forward_ratio: fcn-predict end to end /
                         bare forward (scripts/bench_predict.py)                 target >= 0.85

--quick shrinks every size and repetition count (numbers are then meaningless; the keys and
types are the same) so the whole run takes well under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VOC_ROOT = Path(
    os.environ.get("FCN_VOC_MINI", REPO_ROOT.parent / "shared" / "data" / "voc_mini")
)
# The default run's model (conf/train.yaml) and the benchmark crop of the issue.
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


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _trainer(root: Path, **kw: Any):
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


def _module(num_classes: int, head: str = HEAD):
    from fcn.module import SegmentationModule

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


class _ListDataset:
    """Items of a list (torch's Dataset protocol); batch_size=None hands them over as they are."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def _random_batches(n: int, batch: int, size: tuple[int, int], classes: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, *size, generator=g)
        y = torch.randint(0, classes, (batch, *size), generator=g)
        y[:, :2] = 255  # some void, as real labels have
        out.append((x, y))
    return out


class PlainStepper:
    """The hand-written training step Lightning is measured against: same loss, optimizer
    (conf/optimizer/sgd.yaml) and per-step poly schedule (conf/scheduler/poly.yaml)."""

    def __init__(self, model, total_steps: int) -> None:
        from fcn.optim import build_optimizer, build_scheduler

        opt_cfg = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
        self.model = model.train()
        self.optimizer = build_optimizer(model.backbone, model.head, **opt_cfg)
        self.scheduler = build_scheduler(
            self.optimizer, total_steps, total_steps, name="poly", power=0.9
        )

    def step(self, images, masks) -> float:
        import torch.nn.functional as F

        from fcn.classes import VOID_INDEX

        loss = F.cross_entropy(self.model(images), masks.long(), ignore_index=VOID_INDEX)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()  # Lightning reads the loss back for logging every step, so do we


# ---- 1. framework overhead --------------------------------------------------------------------


def bench_framework(s: Settings, work: Path) -> dict[str, Any]:
    """Trainer.fit vs a plain loop, interleaved step by step so both see the same load.

    A callback runs one plain step (its own copy of the model and optimizer, same batch) at
    the start of every Lightning step; Lightning's step is timed from the end of that plain
    step to the start of the next batch (fetch, step, logging, scheduler, all hooks)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    class Interleave(L.Callback):
        def __init__(self, plain: PlainStepper) -> None:
            self.plain = plain
            self.plain_s: list[float] = []
            self.arrive: list[float] = []  # a Lightning step has ended
            self.depart: list[float] = []  # a Lightning step starts

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.arrive.append(time.perf_counter())
            with torch.enable_grad():
                start = time.perf_counter()
                self.plain.step(*batch)
                self.plain_s.append(time.perf_counter() - start)
            self.depart.append(time.perf_counter())

    n = s.fw_warmup + s.fw_steps + 1  # the start of batch n closes the last timed step
    batches = _random_batches(n, s.fw_batch, s.fw_size, s.fw_classes)
    loader = DataLoader(_ListDataset(batches), batch_size=None, shuffle=False, num_workers=0)
    torch.manual_seed(0)
    module = _module(s.fw_classes)
    clock = Interleave(PlainStepper(copy.deepcopy(module.model), n))
    threads = torch.get_num_threads()
    trainer = _trainer(work / "framework", max_epochs=1, callbacks=[clock], limit_val_batches=0)
    trainer.fit(module, train_dataloaders=loader)
    if torch.get_num_threads() != threads:
        raise RuntimeError(f"fit changed the thread count: {threads} -> {torch.get_num_threads()}")
    timed = range(s.fw_warmup, s.fw_warmup + s.fw_steps)
    lit = [clock.arrive[k + 1] - clock.depart[k] for k in timed]
    plain = [clock.plain_s[k] for k in timed]
    # Blocks of log_every_n_steps steps, so each holds one periodic logger write.
    blocks = [
        (sum(plain[i : i + s.fw_block]), sum(lit[i : i + s.fw_block]))
        for i in range(0, s.fw_steps, s.fw_block)
    ]
    ratios = [p / t for p, t in blocks]
    log(f"framework block ratios {[round(r, 3) for r in ratios]} load {loadavg()[0]}")
    return {
        "framework_ratio": median(ratios),
        "framework_ratio_total": sum(plain) / sum(lit),
        "framework_fit_images_per_s": s.fw_batch / median(lit),
        "framework_plain_images_per_s": s.fw_batch / median(plain),
        "framework_setup": (
            f"FCN-8s/ResNet-18, {s.fw_classes} classes, batch {s.fw_batch} at "
            f"{s.fw_size[0]}x{s.fw_size[1]} (the default run's shapes), SGD+poly per step, "
            f"TensorBoardLogger log_every_n_steps=10; Lightning and plain steps interleaved, "
            f"{s.fw_steps} timed steps each after {s.fw_warmup} warm-up, ratio = median over "
            f"blocks of {s.fw_block} steps of plain time / Lightning time; {threads} threads"
        ),
    }


# ---- 2. data loading vs training --------------------------------------------------------------


def voc_tree(voc_root: Path, work: Path) -> tuple[Path, int, str]:
    """(VOC root, number of classes, description): voc_mini, else generated 500x375 JPEGs."""
    if (voc_root / "ImageSets" / "Segmentation" / "train.txt").is_file():
        return voc_root, 21, f"real VOC 2012 JPEGs at {voc_root}"
    from fcn.data import SYNTHETIC_CLASSES, ensure_synthetic_voc

    log(f"{voc_root} not found: generating synthetic {VOC_IMAGE_SIZE} JPEGs")
    root = ensure_synthetic_voc(work / "synthetic", 147, 142, VOC_IMAGE_SIZE, seed=0)
    return root, len(SYNTHETIC_CLASSES), f"synthetic ~500x375 JPEGs ({voc_root} absent)"


def bench_loader(s: Settings, root: Path, num_classes: int) -> tuple[dict[str, Any], list]:
    """Images/s of the training DataLoader; also returns a few of its batches for training."""
    import lightning as L

    from fcn.data import VOCDataModule

    L.seed_everything(0, workers=True, verbose=False)
    dm = VOCDataModule(
        root=str(root),
        num_classes=num_classes,
        crop_size=list(s.train_crop),
        batch_size=8,
        num_workers=2,
        persistent_workers=True,
    )
    dm.setup("fit")
    if s.loader_images is not None:
        dm.train_dataset.ids = dm.train_dataset.ids[: s.loader_images]
    loader = dm.train_dataloader()
    rates, kept = [], []
    for epoch in range(1 + s.loader_epochs):  # epoch 0 starts the workers: warm-up
        loader.sampler.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for images, masks in loader:
            count += len(images)
            if len(kept) < s.train_warmup + s.train_steps and len(images) == 8:
                kept.append((images, masks))
        rate = count / (time.perf_counter() - start)
        log(f"loader epoch {epoch}: {count} images, {rate:.1f} img/s")
        if epoch:
            rates.append(rate)
    del loader  # stops the persistent workers
    return {
        "loader_images_per_s": median(rates),
        "loader_setup": (
            f"VOCDataModule.train_dataloader over {len(dm.train_dataset)} images: decode, "
            f"random scale 0.5-2, crop {s.train_crop[0]}x{s.train_crop[1]}, flip, normalise, "
            f"batch 8, 2 persistent workers; median of {s.loader_epochs} epochs after 1 warm-up"
        ),
    }, kept


def bench_train_b8(s: Settings, batches: list, num_classes: int) -> dict[str, Any]:
    """FCN-8s/ResNet-18 training throughput at batch 8 on the loader's own crops."""
    import torch

    from fcn.models import build_model

    torch.manual_seed(0)
    model = build_model(BACKBONE, HEAD, num_classes)
    stepper = PlainStepper(model, len(batches))
    steps = []
    for images, masks in batches:
        start = time.perf_counter()
        stepper.step(images, masks)
        steps.append(time.perf_counter() - start)
    steps = steps[s.train_warmup :]
    rate = 8 / median(steps)
    log(f"training FCN-8s/ResNet-18 batch 8: {rate:.2f} img/s ({len(steps)} steps)")
    return {"train_images_per_s_fcn8s_resnet18_b8": rate}


# ---- 3. evaluation vs bare forward ------------------------------------------------------------


def bench_eval(s: Settings, root: Path, num_classes: int, work: Path) -> dict[str, Any]:
    """Trainer.validate vs a bare forward, interleaved image by image (same load on both).

    A callback runs the bare no_grad forward on each batch's image at the start of its
    validation step; the validation step is timed from the end of that forward to the start
    of the next batch (the last one: to the end of the epoch-end hooks)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from fcn.data import VOCSegmentation, pad_collate

    class Interleave(L.Callback):
        def __init__(self, model) -> None:
            self.model = model
            self.bare_s: list[float] = []
            self.arrive: list[float] = []
            self.depart: list[float] = []

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *_) -> None:
            self.arrive.append(time.perf_counter())
            # A plain no_grad loop runs outside Lightning's inference_mode.
            with torch.inference_mode(False), torch.no_grad():
                start = time.perf_counter()
                self.model(batch[0])
                self.bare_s.append(time.perf_counter() - start)
            self.depart.append(time.perf_counter())

        def on_validation_end(self, trainer, pl_module) -> None:
            self.arrive.append(time.perf_counter())

    dataset = VOCSegmentation(root, "val", num_classes=num_classes)
    count = len(dataset) if s.eval_images is None else min(s.eval_images, len(dataset))
    pairs = [dataset[i] for i in range(count)]  # decoded once: both sides see the same tensors
    loader = DataLoader(_ListDataset(pairs), batch_size=1, collate_fn=pad_collate, num_workers=0)
    torch.manual_seed(0)
    module = _module(num_classes)
    with torch.no_grad():  # warm-up: oneDNN sets up every image size once
        for image, _ in pairs:
            module.model.eval()(image[None])
    evals, bares, wholes = [], [], []
    for r in range(s.eval_rounds):
        clock = Interleave(module.model)
        trainer = _trainer(work / "eval", callbacks=[clock])
        start = time.perf_counter()
        trainer.validate(module, dataloaders=loader, verbose=False)
        wholes.append(time.perf_counter() - start - sum(clock.bare_s))
        evals.append([b - a for a, b in zip(clock.depart, clock.arrive[1:])])
        bares.append(clock.bare_s)
        log(
            f"eval round {r}: Trainer.validate {count / sum(evals[-1]):.2f} img/s, "
            f"bare {count / sum(bares[-1]):.2f} img/s, load {loadavg()[0]}"
        )
    # Per image, the median over rounds, then summed: both sides judged on the same images.
    eval_s = sum(median(t) for t in zip(*evals))
    bare_s = sum(median(t) for t in zip(*bares))
    sizes = {tuple(x.shape[-2:]) for x, _ in pairs}
    return {
        "eval_images_per_s": count / eval_s,
        "forward_images_per_s": count / bare_s,
        "eval_to_forward_ratio": bare_s / eval_s,
        "eval_whole_call_images_per_s": count / median(wholes),
        "eval_setup": (
            f"FCN-8s/ResNet-18 on {count} whole val images ({len(sizes)} sizes, e.g. "
            f"{max(sizes)}), batch 1; Trainer.validate (loss, argmax, confusion-matrix update, "
            f"epoch-end metrics and TensorBoard images; first batch to the end "
            f"of the epoch-end hooks) vs a no_grad forward, interleaved image by image; per "
            f"image the median of {s.eval_rounds} rounds after a warm-up forward pass"
        ),
    }


# ---- 4. our head vs the seed's Sequential ----------------------------------------------------


def seed_fcn32s(model, num_classes: int):
    """The seed's FCN-32s (d2l): ResNet-18 children[:-2], 1x1 conv, one ConvTranspose2d,
    carrying `model`'s weights."""
    import torch
    from torch import nn
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    missing, unexpected = net.load_state_dict(model.backbone.body.state_dict(), strict=False)
    if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
        raise RuntimeError(f"backbone weights do not map onto resnet18: {missing} {unexpected}")
    seed = nn.Sequential(*list(net.children())[:-2])
    seed.add_module("final_conv", nn.Conv2d(512, num_classes, kernel_size=1))
    seed.add_module(
        "transpose_conv",
        nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, padding=16, stride=32),
    )
    with torch.no_grad():
        seed.final_conv.load_state_dict(model.head.score32.state_dict())
        seed.transpose_conv.weight.copy_(model.head.final_up.weight)
        seed.transpose_conv.bias.zero_()  # ours has no bias: it starts (and stays) bilinear
    return seed


def bench_forward_vs_seed(s: Settings) -> dict[str, Any]:
    import torch

    from fcn.models import build_model

    torch.manual_seed(0)
    ours = build_model(BACKBONE, "fcn32s", 21).eval()
    seed = seed_fcn32s(ours, 21).eval()
    x = torch.randn(1, 3, *s.seed_size)
    with torch.no_grad():
        diff = float((ours(x) - seed(x)).abs().max())
    if diff > 1e-3:
        raise RuntimeError(f"our FCN-32s and the seed's differ by {diff}: weights not copied")

    def once(net) -> float:
        start = time.perf_counter()
        net(x)
        return time.perf_counter() - start

    t_ours, t_seed, ratios = [], [], []
    with torch.no_grad():
        for i in range(s.seed_warmup + s.seed_reps):
            # Alternate which goes first, so a load spike does not always hit the same one.
            pair = [(t_ours, ours), (t_seed, seed)][:: 1 if i % 2 else -1]
            got = {id(lst): once(net) for lst, net in pair}
            if i >= s.seed_warmup:
                t_ours.append(got[id(t_ours)])
                t_seed.append(got[id(t_seed)])
                ratios.append(t_seed[-1] / t_ours[-1])
    log(f"forward 32s: ours {median(t_ours) * 1e3:.1f} ms, seed {median(t_seed) * 1e3:.1f} ms")
    return {
        "forward_ratio_vs_seed": median(t_seed) / median(t_ours),
        "forward_ratio_vs_seed_pairwise": median(ratios),
        "forward_ms_ours_fcn32s": median(t_ours) * 1e3,
        "forward_ms_seed_fcn32s": median(t_seed) * 1e3,
        "forward_max_abs_diff_vs_seed": diff,
        "forward_setup": (
            f"FCN-32s/ResNet-18, 21 classes, batch 1 at {s.seed_size[0]}x{s.seed_size[1]}, "
            f"no_grad, eval mode; ratio of median times over {s.seed_reps} alternating pairs"
        ),
    }


# ---- 5. peak memory of the default training run -----------------------------------------------


def _ppid_map() -> dict[int, int]:
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _tree(root: int) -> list[int]:
    parents = _ppid_map()
    tree, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        tree += frontier
    return tree


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def bench_peak_rss(s: Settings, work: Path) -> dict[str, Any]:
    import resource

    run_dir = work / "rss_run"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    if s is QUICK:  # keep the tiny generated tree out of the user's cache
        env["FCN_CACHE"] = str(work / "cache")
        env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "fcn.train", *s.rss_overrides]
    log(f"peak RSS: {' '.join(cmd[1:])} (cwd {run_dir})")
    peak = {"main_hwm": 0, "tree_rss": 0, "tree_pss": 0, "procs": 0}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tail: list[str] = []
    reader = threading.Thread(target=lambda: tail.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak["main_hwm"] = max(peak["main_hwm"], _status_kb(proc.pid, "VmHWM"))
        peak["tree_rss"] = max(peak["tree_rss"], sum(_status_kb(p, "VmRSS") for p in pids))
        peak["tree_pss"] = max(peak["tree_pss"], sum(_pss_kb(p) for p in pids))
        peak["procs"] = max(peak["procs"], len(pids))
        time.sleep(0.05)
    reader.join(timeout=5)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"fcn.train failed ({proc.returncode}):\n{''.join(tail[-30:])}")
    # Largest single descendant (the main process; its waited-for workers count too).
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    log(f"peak RSS: main {peak['main_hwm'] / 1024:.0f} MB, tree {peak['tree_rss'] / 1024:.0f} MB")
    return {
        "peak_rss_mb": peak["main_hwm"] / 1024,
        "peak_rss_tree_sum_mb": peak["tree_rss"] / 1024,
        "peak_pss_tree_sum_mb": peak["tree_pss"] / 1024,
        "peak_rss_children_maxrss_mb": children_kb / 1024,
        "peak_rss_processes": peak["procs"],
        "peak_rss_run_s": elapsed,
        "peak_rss_note": s.rss_note
        + ". peak_rss_mb = main process VmHWM; tree sums poll VmRSS / smaps_rollup Pss of the "
        "process tree every 50 ms (RSS double-counts pages shared with forked workers, PSS "
        "does not)",
    }


# ---- driver -----------------------------------------------------------------------------------


TARGETS = {
    "framework_ratio": (">=", 0.95),
    "loader_images_per_s": (">=", 150.0),
    "loader_to_train_ratio": (">=", 3.0),
    "eval_to_forward_ratio": (">=", 0.9),
    "forward_ratio_vs_seed": (">=", 0.97),
    "peak_rss_mb": ("<=", 3000.0),
    # The tree's real footprint: RSS sums count every shared page (torch's libraries, forked
    # copy-on-write memory) once per process.
    "peak_pss_tree_sum_mb": ("<=", 3000.0),
    "realdata_val_mIoU": (">=", 0.35),
    "realdata_wall_s": ("<=", 900.0),
    "predict_to_forward_ratio": (">=", 0.85),
}


SECTIONS = ("rss", "framework", "loader", "eval", "forward", "predict")
LONG_SECTIONS = ("realdata",)  # a whole training run: only when named in --only


def run(
    quick: bool, voc_root: Path, threads: int | None, only: Sequence[str] = SECTIONS
) -> dict[str, Any]:
    import torch

    s = QUICK if quick else FULL
    if threads is None and quick:
        # Quick runs share the CPU with test suites; one thread avoids OpenMP barrier stalls
        # under contention (2 threads on 2 busy cores ran tiny convs ~20x slower).
        threads = 1
    if threads:
        torch.set_num_threads(threads)
    _quiet_lightning()
    started = time.perf_counter()
    result: dict[str, Any] = {"quick": quick, "machine": machine_info(), "load_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="fcn-bench-") as tmp:
        work = Path(tmp)
        # First, before this process has any DataLoader workers of its own (RUSAGE_CHILDREN).
        if "rss" in only:
            result.update(bench_peak_rss(s, work))
        if "framework" in only:
            result.update(bench_framework(s, work))
        if {"loader", "eval", "predict"} & set(only):
            root, num_classes, source = voc_tree(voc_root, work)
            result["data_source"] = source
        if "loader" in only:
            loader_result, batches = bench_loader(s, root, num_classes)
            result.update(loader_result)
            result.update(bench_train_b8(s, batches, num_classes))
            result["loader_to_train_ratio"] = (
                result["loader_images_per_s"] / result["train_images_per_s_fcn8s_resnet18_b8"]
            )
        if "eval" in only:
            result.update(bench_eval(s, root, num_classes, work))
        if "forward" in only:
            result.update(bench_forward_vs_seed(s))
        if "realdata" in only:
            import bench_realdata  # beside this file

            result.update(bench_realdata.measure(quick, voc_root, work / "realdata"))
        if "predict" in only:
            from bench_predict import bench_predict  # scripts/ is on sys.path as the script's dir

            result.update(bench_predict(quick, root, num_classes, work))
    result["load_end"] = loadavg()
    result["total_s"] = time.perf_counter() - started
    result["targets_met"] = {
        key: (result[key] >= bound if op == ">=" else result[key] <= bound)
        for key, (op, bound) in TARGETS.items()
        if key in result
    }
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs (<1 min)")
    parser.add_argument("--out", default="benchmark.json", help="JSON file to write")
    parser.add_argument("--voc-root", type=Path, default=DEFAULT_VOC_ROOT, help="VOC tree")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (torch's default; 1 with --quick)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS + LONG_SECTIONS)} (default: "
        f"{','.join(SECTIONS)})",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SECTIONS + LONG_SECTIONS))
    if unknown:
        choices = ",".join(SECTIONS + LONG_SECTIONS)
        parser.error(f"--only: unknown sections {unknown}; choose from {choices}")
    sys.path.insert(0, str(REPO_ROOT))  # `python scripts/benchmark.py` without installing
    # Lightning and friends print to stdout; stdout carries only the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args.quick, args.voc_root, args.threads, only)
    text = json.dumps(result, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
