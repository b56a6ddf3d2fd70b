"""`python -m fcn.evaluate ckpt_path=FILE [data=...] [split=val] [eval.mode=slide ...]`, or
`python -m fcn.evaluate backend=onnx|exported_program|torch model=FILE ...` for an export.

Scores a checkpoint on one split, each image whole at its own size (batch of 1, so no
padding from other images reaches its logits), with the same confusion-matrix metrics as
training. Prints a per-class table and writes metrics.json (and optionally predictions.png)
into the run directory.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fcn.cli.entry import hydra_entry
from fcn.core.classes import colour_table
from fcn.deploy.model_data import data_for_model
from fcn.deploy.model_files import configured_model, load_model
from fcn.models.inference import InferenceOptions, predict_logits
from fcn.training.figures import prediction_grid, prediction_row
from fcn.training.metrics import SegmentationMetrics, argmax_classes
from fcn.training.precision import resolve_precision


class Evaluator(L.LightningModule):
    """Test-time wrapper: TTA logits -> argmax -> one split-level confusion matrix."""

    def __init__(
        self,
        model: torch.nn.Module,
        num_classes: int,
        options: InferenceOptions,
        num_figure_images: int = 0,
        colours: list[tuple[int, int, int]] | None = None,
    ) -> None:
        super().__init__()
        self.colours = colours if colours is not None else colour_table([])
        self.model = model
        self.options = options
        self.metrics = SegmentationMetrics(num_classes)
        self.num_figure_images = num_figure_images
        self.figure_rows: list[torch.Tensor] = []
        self.num_images = 0
        self.scores: dict[str, torch.Tensor] = {}
        self.seconds = 0.0
        # Under DDP a split smaller than the world leaves ranks without images; Lightning lets
        # such a rank skip the test loop (hooks included), so the cross-rank sums are taken
        # after it, in `gather`, on every rank.
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def on_test_epoch_start(self) -> None:
        self.seconds = time.perf_counter()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, masks = batch
        preds = argmax_classes(predict_logits(self.model, images, self.options))
        self.metrics.update(preds, masks)
        self.num_images += len(images)
        for image, mask, pred in zip(images, masks, preds, strict=True):
            if len(self.figure_rows) < self.num_figure_images:
                self.figure_rows.append(prediction_row(image, mask, pred, colours=self.colours))

    def on_test_epoch_end(self) -> None:
        self.seconds = time.perf_counter() - self.seconds

    def gather(self) -> None:
        """After `trainer.test`, on every rank: the split's scores and image count."""
        self.scores = self.metrics.compute()  # syncs the confusion matrix across processes
        count = torch.tensor(float(self.num_images), device=self.device)
        self.num_images = int(self.trainer.strategy.reduce(count, reduce_op="sum").item())


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `cfg.ckpt_path` on `cfg.split` of `cfg.data`; returns the metrics.json dict."""
    options = InferenceOptions.from_config(cfg.get("eval"), key="eval")
    model_file, backend, key = configured_model(cfg)
    # the Trainer moves it
    loaded = load_model(model_file, backend, "cpu", key, cfg.get("allow_modules"))
    num_classes = loaded.info.num_classes

    # Batches of one: whole images at their own size, no padding from a batch-mate.
    datamodule = data_for_model(
        cfg.data, loaded.info, str(loaded.path), str(cfg.split), val_batch_size=1
    )
    datamodule.prepare_data()
    datamodule.setup("test")  # checks every pair of the split before any forward pass

    figure = bool(cfg.eval.get("save_figure", False))
    evaluator = Evaluator(
        loaded.network,
        num_classes,
        options,
        num_figure_images=int(cfg.eval.get("num_figure_images", 8)) if figure else 0,
        colours=loaded.info.colour_table(),
    )
    output_dir = Path(cfg.paths.output_dir)
    resolve_precision(cfg.trainer)  # trainer=gpu's `precision: auto`
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[], default_root_dir=str(output_dir)
    )
    # The datamodule's test loader, built once the processes exist: under DDP each image goes
    # to exactly one rank (the sampler training's validation uses), none is repeated.
    trainer.test(evaluator, datamodule=datamodule, verbose=False)
    evaluator.gather()

    names = list(loaded.info.class_names)  # the model's classes, as its checkpoint names them
    result = metrics_dict(evaluator.scores, names, evaluator.num_images)
    result.update(
        model=str(loaded.path),
        backend=backend,
        ckpt_path=cfg.get("ckpt_path"),
        split=cfg.split,
        eval=_plain(cfg.eval),
    )
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        print(format_table(evaluator.scores, names))
        path = output_dir / "metrics.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        line = (
            f"{cfg.split}: mIoU={result['mIoU']:.4f} pixel_acc={result['pixel_acc']:.4f} "
            f"mean_acc={result['mean_acc']:.4f} fwIoU={result['fwIoU']:.4f} "
            f"images={result['num_images']} ({_rate(evaluator)}) metrics={path}"
        )
        if evaluator.figure_rows:
            figure_path = output_dir / "predictions.png"
            save_grid(evaluator.figure_rows, figure_path)
            line += f" figure={figure_path}"
        print(line)
    return result


def metrics_dict(scores: dict[str, torch.Tensor], names: list[str], num_images: int) -> dict:
    """The metrics.json content; classes absent from truth and prediction are null."""

    def num(t: torch.Tensor) -> float | None:
        v = float(t)
        return None if math.isnan(v) else v

    return {
        "pixel_acc": num(scores["pixel_acc"]),
        "mean_acc": num(scores["mean_acc"]),
        "mIoU": num(scores["mIoU"]),
        "fwIoU": num(scores["fwIoU"]),
        "per_class_iou": {n: num(v) for n, v in zip(names, scores["per_class_iou"], strict=True)},
        "per_class_acc": {n: num(v) for n, v in zip(names, scores["per_class_acc"], strict=True)},
        "num_images": num_images,
    }


def format_table(scores: dict[str, torch.Tensor], names: list[str]) -> str:
    """Per-class IoU / accuracy / ground-truth pixel count, then the summary metrics."""
    confmat = scores["confmat"].double().cpu()
    width = max(12, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}  {'pixels':>10}"]
    for i, name in enumerate(names):
        iou, acc = float(scores["per_class_iou"][i]), float(scores["per_class_acc"][i])
        lines.append(
            f"{name:<{width}}  {_pct(iou):>7}  {_pct(acc):>7}  {int(confmat[i].sum()):>10d}"
        )
    lines.append("-" * len(lines[0]))
    for key in ("mIoU", "mean_acc", "pixel_acc", "fwIoU"):
        lines.append(f"{key:<{width}}  {_pct(float(scores[key])):>7}")
    return "\n".join(lines)


def _rate(evaluator: Evaluator) -> str:
    """Images per second of this process's share (data loading included)."""
    per_rank = evaluator.num_images / max(evaluator.trainer.world_size, 1)
    return f"{per_rank / max(evaluator.seconds, 1e-9):.2f} images/s per process"


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.2f}"


def save_grid(rows: list[torch.Tensor], path: Path) -> None:
    """Rows of image | ground truth | prediction, stacked into one PNG."""
    from PIL import Image

    grid = prediction_grid(rows)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


@hydra_entry("eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
