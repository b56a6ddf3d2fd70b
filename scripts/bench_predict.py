"""fcn-predict throughput for scripts/benchmark.py (section `predict`).

  predict_images_per_s_torch  fcn-predict end to end with its defaults (batch_size and
                              num_workers auto, lanes; network, argmax, palette PNG + JPEG
                              overlay written) over a folder of VOC val JPEGs,
                              FCN-8s/ResNet-18 checkpoint
  predict_images_per_s_onnx   the same with backend=onnx (the model exported by fcn-export)
  predict_to_forward_ratio    predict_images_per_s_torch / a bare no_grad forward of the same
                              images (decoded and normalised beforehand, in the same-size
                              batches fcn-predict forms, one after another on all of
                              torch's threads)                                     target >= 0.85

Bare forward and fcn-predict are measured alternately in the same process, rounds apart, and
each side's median is kept. "End to end" is the `predict()` call: checking every header,
loading the checkpoint, the DataLoader, writing every file.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench_common import REPO_ROOT, log

NUM_IMAGES = {False: 40, True: 2}  # full, --quick
# 5: the median of 3 rounds still moved by +-0.02 in the ratio between runs on 2 idle cores.
ROUNDS = {False: 5, True: 1}


def _checkpoint(num_classes: int, work: Path) -> Path:
    """A default-run FCN-8s/ResNet-18 (random weights: speed does not depend on them)."""
    import torch

    from fcn.training.module import SegmentationModule

    torch.manual_seed(0)
    module = SegmentationModule("resnet18", "fcn8s", num_classes)
    path = work / "predict_bench.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def _image_folder(root: Path, count: int, work: Path) -> list[Path]:
    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[:count]
    folder = work / "predict_images"
    folder.mkdir()
    for i in ids:
        (folder / f"{i}.jpg").symlink_to((root / "JPEGImages" / f"{i}.jpg").resolve())
    return sorted(folder.iterdir())


def _run_predict(model: Path, backend: str, images: Path, out: Path) -> float:
    """Seconds of one `predict()` call with fcn-predict's defaults (workers, batching)."""
    from hydra import compose, initialize_config_dir

    from fcn.predict import predict

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "predict",
            [
                f"backend={backend}",
                f"model={model}",
                f"input={images}",
                f"paths.output_dir={out}",
                "device=cpu",
                "progress=false",
            ],
        )
    start = time.perf_counter()
    predict(cfg)
    return time.perf_counter() - start


def _bare_forward(model, tensors: list) -> float:
    import torch

    start = time.perf_counter()
    with torch.no_grad():
        for x in tensors:
            model(x)
    return time.perf_counter() - start


def bench_predict(quick: bool, root: Path, num_classes: int, work: Path) -> dict[str, Any]:
    import torch

    from fcn.core.errors import FCNError
    from fcn.core.normalization import normalize_image
    from fcn.deploy.exporters import write_export
    from fcn.deploy.image_files import read_rgb
    from fcn.deploy.model_files import rebuild_module
    from fcn.deploy.model_info import ModelInfo
    from fcn.deploy.prediction_lanes import batch_size_for
    from fcn.predict import same_size_batches

    ckpt = _checkpoint(num_classes, work)
    paths = _image_folder(root, NUM_IMAGES[quick], work)
    folder, count = paths[0].parent, len(paths)
    module = rebuild_module(ckpt)
    model = module.model.eval()
    # The bare forward gets the batches fcn-predict makes (batch_size=auto on CPU), so the
    # ratio is what decoding, argmax, writing and scheduling cost or gain, not what batching does.
    batch_size = batch_size_for({"batch_size": "auto"}, torch.device("cpu"), "torch")
    images = [normalize_image(read_rgb(p)) for p in paths]
    batches = same_size_batches([tuple(x.shape[-2:]) for x in images], batch_size)
    tensors = [torch.stack([images[i] for i in batch]) for batch in batches]
    _bare_forward(model, tensors)  # warm-up: oneDNN sets up every size once
    onnx: Path | None = work / "predict_bench.onnx"
    try:
        info = ModelInfo.from_module(module, module.checkpoint_hyper_parameters)
        write_export(model, "onnx", onnx, info.to_metadata("onnx"))
    except (ImportError, FCNError) as err:  # onnx / onnxscript / onnxruntime not installed
        log(f"predict: no ONNX measurement ({err})")
        onnx = None
    bare, torch_s, onnx_s = [], [], []
    for r in range(ROUNDS[quick]):
        bare.append(_bare_forward(model, tensors))
        torch_s.append(_run_predict(ckpt, "torch", folder, work / f"predict_torch_{r}"))
        if onnx is not None:
            onnx_s.append(_run_predict(onnx, "onnx", folder, work / f"predict_onnx_{r}"))
        log(
            f"predict round {r}: bare forward {count / bare[-1]:.2f} img/s, fcn-predict torch "
            f"{count / torch_s[-1]:.2f} img/s"
            + (f", onnx {count / onnx_s[-1]:.2f} img/s" if onnx_s else "")
        )
    result: dict[str, Any] = {
        "predict_images_per_s_torch": count / statistics.median(torch_s),
        "predict_forward_images_per_s": count / statistics.median(bare),
        "predict_to_forward_ratio": statistics.median(bare) / statistics.median(torch_s),
        "predict_setup": (
            f"fcn-predict (defaults: num_workers=auto, batch_size=auto ({batch_size}), whole "
            "images, device=cpu) "
            f"over {count} val JPEGs of {root}, FCN-8s/ResNet-18 with {num_classes} classes, vs a "
            f"bare no_grad forward of the decoded images in the same batches ({len(batches)} "
            f"batches of one size, up to {batch_size}); median of "
            f"{ROUNDS[quick]} alternating rounds after a warm-up forward"
        ),
    }
    if onnx_s:
        result["predict_images_per_s_onnx"] = count / statistics.median(onnx_s)
    return result
