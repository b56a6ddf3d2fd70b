"""Whole-image evaluation and prediction on the GPU for scripts/bench_gpu.py (section `eval`).

cpu_vs_gpu           one FCN-8s/ResNet-18 checkpoint over the same voc_mini val images on
                     the CPU and on the GPU (fp32, TF32 off): both confusion matrices, and
                     the pixels whose class differs although the CPU's best two logits are
                     more than 1e-3 apart (must be 0). Without a GPU the CPU half runs.
eval_images_per_s    Trainer.validate (batch 1, whole images, loss, argmax, confusion matrix)
                     on the GPU, fp32 and bf16-mixed; median of 2 rounds after a warm-up
predict_images_per_s fcn-predict end to end (device=cuda, its defaults: model load, decode
                     workers, lanes, PNG + overlay files) over the same JPEGs

`dry=True` runs the GPU half on the CPU with a few images (a check of this file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench_common import REPO_ROOT, ListDataset, log, median

NUM_IMAGES = 20


def _confusions(ckpt: Path, pairs: list, device: str | None) -> dict[str, Any]:
    import torch

    from fcn.deploy.model_files import load_model
    from fcn.deploy.tie_check import untied_differences
    from fcn.training.metrics import SegmentationMetrics

    cpu_net = load_model(ckpt, "torch", "cpu").network
    gpu_net = load_model(ckpt, "torch", device).network if device else None
    cpu_m = gpu_m = None
    untied = 0
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            for image, mask in pairs:
                ref = cpu_net(image[None])
                num_classes = ref.shape[1]
                cpu_m = cpu_m or SegmentationMetrics(num_classes)
                cpu_m.update(ref, mask[None])
                if gpu_net is not None:
                    got = gpu_net(image[None].to(device)).cpu()
                    gpu_m = gpu_m or SegmentationMetrics(num_classes)
                    gpu_m.update(got, mask[None])
                    untied += untied_differences(ref, got)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    result: dict[str, Any] = {
        "images": len(pairs),
        "cpu_confmat": cpu_m.compute()["confmat"].tolist(),
    }
    if gpu_m is not None:
        gpu_confmat = gpu_m.compute()["confmat"]
        result["gpu_confmat_equal"] = bool(torch.equal(gpu_confmat, cpu_m.compute()["confmat"]))
        result["pixels_differing_beyond_ties"] = untied
        result["ok"] = untied == 0
    return result


def _validate_rate(ckpt: Path, pairs: list, precision: str, device: str) -> float:
    import lightning as L
    from torch.utils.data import DataLoader

    from fcn.data import pad_collate
    from fcn.deploy.model_files import rebuild_module

    module = rebuild_module(ckpt)
    loader = DataLoader(ListDataset(pairs), batch_size=1, collate_fn=pad_collate)
    times = []
    for _ in range(3):  # the first round warms up cuDNN for every image size
        trainer = L.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            precision=precision,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        start = time.perf_counter()
        trainer.validate(module, dataloaders=loader, verbose=False)
        times.append(time.perf_counter() - start)
    return len(pairs) / median(times[1:])


def _predict_rate(ckpt: Path, images: Path, work: Path, device: str) -> float:
    from hydra import compose, initialize_config_dir

    from fcn.predict import predict

    times = []
    for r in range(3):  # round 0: warm-up
        with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "predict",
                [
                    f"model={ckpt}",
                    f"input={images}",
                    f"device={device}",
                    f"paths.output_dir={work / f'predict_{r}'}",
                    "progress=false",
                ],
            )
        start = time.perf_counter()
        predict(cfg)
        times.append(time.perf_counter() - start)
    return len(list(images.iterdir())) / median(times[1:])


def bench_eval_predict(
    tree: tuple[Path, int, str],
    work: Path,
    seconds: float,
    has_gpu: bool,
    dry: bool = False,
    out: dict[str, Any] | None = None,
) -> dict:
    """Fills `out` as it goes (what was measured survives the section's time limit)."""
    from bench_predict import _checkpoint, _image_folder

    from fcn.data import VOCSegmentation

    root, num_classes, source = tree  # bench_common.voc_tree
    ckpt = _checkpoint(num_classes, work)
    dataset = VOCSegmentation(root, "val", num_classes=num_classes)
    device = "cuda" if has_gpu else ("cpu" if dry else None)
    count, predict_count = (3, 3) if dry else (NUM_IMAGES, 40)
    pairs = [dataset[i] for i in range(min(count, len(dataset)))]
    result: dict[str, Any] = {} if out is None else out
    result.update(data_source=source, skipped={})
    result["cpu_vs_gpu"] = _confusions(ckpt, pairs, device)
    brief = {k: v for k, v in result["cpu_vs_gpu"].items() if "confmat" not in k}
    log(f"eval cpu_vs_gpu: {brief}")
    if device is None:
        result["skipped"]["gpu_half"] = "no CUDA GPU: the CPU half (confusion matrix) ran alone"
        result["skipped"]["throughput"] = "no CUDA GPU (CPU rates: scripts/benchmark.py)"
        return result
    for precision in ("32-true", "bf16-mixed"):
        rate = _validate_rate(ckpt, pairs, precision, device)
        result[f"eval_images_per_s_{precision}"] = round(rate, 1)
        log(f"eval Trainer.validate {precision}: {rate:.1f} img/s")
    folder = _image_folder(root, predict_count, work)[0].parent
    result["predict_images_per_s"] = round(_predict_rate(ckpt, folder, work, device), 1)
    log(f"fcn-predict device={device}: {result['predict_images_per_s']} img/s")
    result["setup"] = (
        f"FCN-8s/ResNet-18 ({num_classes} classes, random weights) on {len(pairs)} "
        f"whole val images of {root} (validate) and {predict_count} (fcn-predict)"
    )
    return result
