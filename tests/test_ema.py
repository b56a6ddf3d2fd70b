"""callbacks=ema: Lightning's EMAWeightAveraging; validation and the best checkpoint hold the
averaged weights, which differ from the raw ones."""

from __future__ import annotations

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

from fcn.core.config_tree import config_dir
from fcn.training.callbacks import WeightsEMA
from fcn.training.module import SegmentationModule


class RawWeights(L.Callback):
    """Keeps the raw (training) weights after every optimizer step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def test_ema_config_is_lightnings_callback():
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", ["callbacks=ema", "callbacks.ema.decay=0.9"])
    ema = instantiate(cfg.callbacks.ema)
    assert isinstance(ema, EMAWeightAveraging) and "best_checkpoint" in cfg.callbacks


def test_best_checkpoint_holds_the_averaged_weights(tiny_datamodule, tmp_path):
    torch.manual_seed(0)
    # a large lr: the raw weights move far enough for the average to differ clearly
    sgd = {"name": "sgd", "lr": 0.5, "momentum": 0.9}
    module = SegmentationModule("resnet18", "fcn32s", 6, optimizer=sgd)
    decay = 0.5
    raw = RawWeights()
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/mIoU", mode="max", save_top_k=1)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=1,
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[WeightsEMA(decay=decay), raw, best],
    )  # fmt: skip
    trainer.fit(module, datamodule=tiny_datamodule)
    stored = torch.load(best.best_model_path, weights_only=True)
    key = "model.backbone.body.layer4.1.conv2.weight"
    # AveragedModel: the first update copies, each later one is decay * avg + (1 - decay) * w.
    expected = raw.steps[0][key]
    for step in raw.steps[1:]:
        expected = decay * expected + (1 - decay) * step[key]
    assert torch.allclose(stored["state_dict"][key], expected, atol=1e-6, rtol=0)
    assert (stored["state_dict"][key] - raw.steps[-1][key]).abs().max() > 1e-3
    assert torch.equal(stored["current_model_state"][key], raw.steps[-1][key])
    # after fit the module itself holds the average (what fcn-train's test and exports use)
    assert torch.equal(module.state_dict()[key], stored["state_dict"][key])
    # testing the best checkpoint (as fcn-train does after fit) scores the averaged weights
    dict(module.named_parameters())[key].data.zero_()
    trainer.test(module, datamodule=tiny_datamodule, ckpt_path=best.best_model_path, verbose=False)
    assert torch.equal(module.state_dict()[key], stored["state_dict"][key])


class AtTrainStart(L.Callback):
    def __init__(self, ema: WeightsEMA) -> None:
        self.ema, self.raw, self.average = ema, None, None

    def on_train_start(self, trainer, pl_module) -> None:
        self.raw = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.average = {
            k: v.detach().clone() for k, v in self.ema._average_model.module.state_dict().items()
        }


def test_resume_restores_raw_and_averaged_weights(tiny_datamodule, tmp_path):
    torch.manual_seed(0)
    sgd = {"name": "sgd", "lr": 0.5, "momentum": 0.9}
    opts = {
        "accelerator": "cpu",
        "limit_train_batches": 2,
        "limit_val_batches": 0,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    # written at the epoch's end, before fit copies the average into the model
    last = ModelCheckpoint(dirpath=tmp_path, filename="last", monitor=None)
    trainer = L.Trainer(max_epochs=1, callbacks=[WeightsEMA(decay=0.5), last], **opts)
    module = SegmentationModule("resnet18", "fcn32s", 6, optimizer=sgd)
    trainer.fit(module, datamodule=tiny_datamodule)
    stored = torch.load(last.last_model_path or last.best_model_path, weights_only=True)
    key = "model.backbone.body.layer4.1.conv2.weight"
    assert not torch.equal(stored["current_model_state"][key], stored["state_dict"][key])
    ema = WeightsEMA(decay=0.5)
    probe = AtTrainStart(ema)
    resumed = L.Trainer(max_epochs=2, callbacks=[ema, probe], enable_checkpointing=False, **opts)
    module = SegmentationModule("resnet18", "fcn32s", 6, optimizer=sgd)
    resumed.fit(module, datamodule=tiny_datamodule, ckpt_path=last.best_model_path)
    assert torch.equal(probe.raw[key], stored["current_model_state"][key])
    assert torch.equal(probe.average[key], stored["state_dict"][key])
