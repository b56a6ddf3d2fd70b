"""The LightningModule: an FCN, cross-entropy with void ignored, split-level metrics, pictures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fcn.core.classes import VOID_INDEX, colour_table, default_palette, numbered_class_names
from fcn.core.errors import CheckpointError, ConfigError, DivergenceError
from fcn.core.torch_files import load_state_dict_file
from fcn.models import build_model
from fcn.models.freezing import freeze_backbone
from fcn.models.heads import AuxHead
from fcn.models.inference import InferenceOptions, predict_logits
from fcn.training.figures import confusion_figure, prediction_grid, prediction_row
from fcn.training.loggers import figure_image, log_image, takes_images
from fcn.training.losses import build_loss
from fcn.training.metrics import MeanPixelLoss, SegmentationMetrics, argmax_classes
from fcn.training.optim import build_optimizer, build_scheduler, scheduled_steps


class SegmentationModule(L.LightningModule):
    """Trains and validates one FCN; its checkpoint rebuilds the model with no config."""

    def __init__(
        self,
        backbone: str = "resnet18",
        head: str = "fcn8s",
        num_classes: int = 21,
        pretrained: bool = False,
        weights_path: str | None = None,
        learn_upsampling: bool = True,
        model_name: str | None = None,
        backbone_target: str | None = None,
        head_target: str | None = None,
        freeze_bn: bool = False,
        frozen_stages: int = 0,
        aux_weight: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        palette: list[list[int]] | None = None,
        ignore_index: int = VOID_INDEX,
        class_weights: list[float] | None = None,
        loss: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        num_log_images: int = 4,
        log_image_max_side: int | None = 320,
        val_inference: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if log_image_max_side is not None and log_image_max_side < 1:
            raise ConfigError(
                f"model.log_image_max_side must be a positive number of pixels or null (full "
                f"size), got {log_image_max_side}"
            )
        self.save_hyperparameters()
        self.model = build_model(
            backbone,
            head,
            num_classes,
            pretrained=pretrained,
            weights_path=weights_path,
            learn_upsampling=learn_upsampling,
            model_name=model_name,
            backbone_target=backbone_target,
            head_target=head_target,
        )
        freeze_backbone(self.model.backbone, freeze_bn, frozen_stages)
        if aux_weight < 0:
            raise ConfigError(f"model.aux_weight={aux_weight}: give 0 (no auxiliary head) or more")
        self.aux_head = (
            AuxHead(self.model.backbone.channels[1], num_classes) if aux_weight > 0 else None
        )
        # The dataset's classes travel in the checkpoint (hyper-parameters), so evaluating,
        # predicting and exporting need no data config. Checkpoints from before palettes were
        # stored draw in the default colours (VOC's colormap).
        self.class_names = list(class_names) if class_names else numbered_class_names(num_classes)
        self.palette = [tuple(c) for c in palette] if palette else default_palette(num_classes)
        if len(self.class_names) != num_classes or len(self.palette) != num_classes:
            raise ConfigError(
                f"model.num_classes={num_classes} but {len(self.class_names)} class names and "
                f"{len(self.palette)} colours were given: they come from the data's class list"
            )
        self.colours = colour_table(self.palette)
        if class_weights is not None:
            if len(class_weights) != num_classes or min(class_weights) < 0:
                raise ConfigError(
                    f"model.class_weights has {len(class_weights)} values for {num_classes} "
                    "classes: give one non-negative weight per class, in class order, or auto"
                )
            self.register_buffer(
                "class_weights", torch.tensor(class_weights, dtype=torch.float32), persistent=False
            )
        else:
            self.class_weights = None
        # Loaders map every void value to VOID_INDEX (`ignore_index` is recorded for the data).
        self.loss_fn = build_loss(loss, VOID_INDEX, self.class_weights)
        self.optimizer_cfg = dict(optimizer or {"name": "sgd", "lr": 0.01, "momentum": 0.9})
        self.scheduler_cfg = dict(scheduler or {"name": "poly"})
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Compiled forward kept off the module tree so checkpoints keep plain parameter names
        # (assigned past nn.Module.__setattr__: a compiled module would register as a second
        # copy of every weight, `_forward._orig_mod.*`).
        object.__setattr__(self, "_forward", torch.compile(self.model) if compile else self.model)
        aux = self.model.forward_with_features
        object.__setattr__(self, "_forward_aux", torch.compile(aux) if compile else aux)
        self.val_metrics = SegmentationMetrics(num_classes)
        self.test_metrics = SegmentationMetrics(num_classes)
        self.val_loss = MeanPixelLoss()
        self.test_loss = MeanPixelLoss()
        self._log_rows: list[torch.Tensor] = []
        # How validation and test images become logits (`data.val_inference`): null is one
        # forward pass per image; large frames (Cityscapes) are scored by sliding window.
        self.val_options = (
            InferenceOptions.from_config(val_inference, key="data.val_inference")
            if val_inference
            else None
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self._forward(images)

    # ---- training -------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        images, masks = batch
        # Loaders send masks as uint8 (a quarter of the bytes); the loss wants int64 targets.
        masks = masks.long()
        if self.aux_head is None:
            loss = self.loss_fn(self(images), masks)
        else:
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            logits, features = self._forward_aux(images)
            loss = self.loss_fn(logits, masks)
            aux_logits = self.aux_head(features["stride16"], tuple(masks.shape[-2:]))
            aux_loss = self.loss_fn(aux_logits, masks)
            self.log("train/aux_loss", aux_loss, on_step=True, on_epoch=True)
            loss = loss + self.hparams.aux_weight * aux_loss
        self._stop_if_not_finite(loss)  # before backward: the optimizer never applies this step
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[-1]["lr"], on_step=True)
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor) -> None:
        """A NaN/inf loss stops the run with one line; the checkpoints written so far stay."""
        bad = (~torch.isfinite(loss.detach())).float()
        # The same decision on every rank: one rank stopping alone would leave the others
        # waiting in the gradient all-reduce.
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if bad.item() > 0:
            lr = max(group["lr"] for group in self.optimizers().param_groups)
            value = float(loss.detach())
            what = value if not math.isfinite(value) else "not finite on another process"
            raise DivergenceError(
                f"loss is {what} at step {self.trainer.global_step} (lr={lr:.3g}): lower "
                f"optimizer.lr (e.g. optimizer.lr={lr / 10:.3g}) or clip gradients "
                "(trainer.gradient_clip_val=1.0); training stopped before this step, the "
                "checkpoints written earlier are kept"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Weights that overflowed in the last optimizer step would only show as a NaN loss at
        # the next step: never let such weights replace a good checkpoint in the meantime.
        # A sum is finite exactly when every element is (float64: no overflow); one pass, no
        # boolean copy of the weights.
        sums = [
            t.sum(dtype=torch.float64) for t in self.state_dict().values() if t.is_floating_point()
        ]
        if not torch.stack(sums).isfinite().all():
            raise DivergenceError(
                f"the weights are not finite at step {self.trainer.global_step}: lower "
                "optimizer.lr or clip gradients (trainer.gradient_clip_val=1.0); training "
                "stopped, nothing was saved over the checkpoints written earlier"
            )

    # ---- validation and test --------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics, self.val_loss)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_metrics, self.test_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_split_metrics("val", self.val_metrics, self.val_loss)

    def on_test_epoch_end(self) -> None:
        self._log_split_metrics("test", self.test_metrics, self.test_loss)

    def _eval_step(
        self, batch, split: str, metrics: SegmentationMetrics, loss: MeanPixelLoss
    ) -> None:
        images, masks = batch
        masks = masks.long()
        options = self.val_options
        logits = predict_logits(self, images, options) if options else self(images)
        loss.update(logits, masks)
        preds = argmax_classes(logits)
        metrics.update(preds, masks)
        if split == "val" and len(self._log_rows) < self.hparams.num_log_images:
            for image, mask, pred in zip(images, masks, preds):
                if len(self._log_rows) < self.hparams.num_log_images:
                    side = self.hparams.log_image_max_side
                    self._log_rows.append(prediction_row(image, mask, pred, side, self.colours))

    def _log_split_metrics(
        self, split: str, metrics: SegmentationMetrics, loss: MeanPixelLoss
    ) -> None:
        # compute() syncs the confusion matrix and the loss sums across processes.
        self.log(f"{split}/loss", loss.compute())
        loss.reset()
        scores = metrics.compute()
        metrics.reset()
        for key in ("mIoU", "pixel_acc", "mean_acc", "fwIoU"):
            self.log(f"{split}/{key}", scores[key].float(), prog_bar=key == "mIoU")
        for name, iou in zip(self.class_names, scores["per_class_iou"]):
            if not torch.isnan(iou):
                self.log(f"{split}/IoU/{_tag(name)}", iou.float())
        rows, self._log_rows = self._log_rows, []
        if (
            not takes_images(self.loggers)
            or self.trainer.sanity_checking
            or not self.trainer.is_global_zero
        ):
            return
        if rows:
            log_image(self.loggers, f"{split}/predictions", prediction_grid(rows), self.global_step)
        if split == "test":
            # Drawn once, for the best checkpoint: matplotlib costs ~1 s per figure, and the
            # per-class IoU curves already follow every validation.
            fig = figure_image(confusion_figure(scores["confmat"], self.class_names))
            log_image(self.loggers, f"{split}/confusion_matrix", fig, self.global_step)

    # ---- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        opt_cfg = dict(self.optimizer_cfg)
        head = self.model.head
        if self.aux_head is not None:  # trained at the head's lr
            head = torch.nn.ModuleList([self.model.head, self.aux_head])
        optimizer = build_optimizer(self.model.backbone, head, **opt_cfg)
        if self.trainer.datamodule is not None:
            total = scheduled_steps(self.trainer, len(self.trainer.datamodule.train_dataloader()))
        else:  # loaders passed to fit(): Lightning's estimate (no mid-epoch stream restore)
            total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(total // max(self.trainer.max_epochs or 1, 1), 1)
        scheduler = build_scheduler(optimizer, total, per_epoch, **self.scheduler_cfg)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ---- staged training ------------------------------------------------------------------
    def load_matching_weights(self, path: str | Path) -> list[str]:
        """Copy every weight of the checkpoint at `path` whose name and shape match (FCN-32s ->
        16s -> 8s, as in the paper). Returns the names copied."""
        state = load_state_dict_file(path, key="init_from")
        own = self.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not any(k.startswith("model.backbone.") for k in matched):
            raise CheckpointError(
                f"init_from={path}: its backbone does not match {self.hparams.backbone}; "
                "start from a checkpoint of the same backbone"
            )
        self.load_state_dict(matched, strict=False)
        return sorted(matched)


def _tag(name: str) -> str:
    """A TensorBoard-safe tag piece: 'potted/plant x' -> 'potted_plant_x'."""
    return name.replace("/", "_").replace(" ", "_")
