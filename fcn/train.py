"""`python -m fcn.train [overrides]`: compose the config, build objects, fit, test, summarise."""

from __future__ import annotations

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fcn.checkpoints import check_checkpoint, resolve_resume
from fcn.errors import exit_on_user_error


def build_callbacks_and_loggers(cfg: DictConfig) -> tuple[list, list]:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    return callbacks, loggers


def train(cfg: DictConfig) -> float:
    """Fit and test one configuration; returns the best val mIoU (what sweepers maximise)."""
    ckpt_path = resolve_resume(cfg.get("ckpt_path"), cfg.get("resume"))
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    # Generate/validate the data now, so bad input stops before any model or training step.
    datamodule.prepare_data()
    datamodule.setup("fit")

    module = instantiate(cfg.model, class_names=datamodule.class_names, _convert_="all")
    if ckpt_path:
        check_checkpoint(ckpt_path, module)
    elif cfg.get("init_from"):
        copied = module.load_matching_weights(cfg.init_from)
        print(f"init_from: copied {len(copied)} tensors from {cfg.init_from}")

    callbacks, loggers = build_callbacks_and_loggers(cfg)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=cfg.paths.output_dir,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best_score = (
        trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    )
    best = float(best_score) if best_score is not None else float("nan")
    test_metrics = {}
    if cfg.test_after_fit and not trainer.interrupted:
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None)
        test_metrics = results[0] if results else {}
    for logger in loggers:
        final = {"hparams/best_val_mIoU": best}
        final.update({f"hparams/{k}": v for k, v in test_metrics.items() if "IoU/" not in k})
        logger.log_hyperparams(_flat_hparams(cfg), final)
    if trainer.is_global_zero:
        log_dir = loggers[0].log_dir if loggers else cfg.paths.output_dir
        print(f"best val/mIoU={best:.4f} checkpoint={best_path or 'none'} logs={log_dir}")
    return best


def _flat_hparams(cfg: DictConfig) -> dict:
    """The choices worth comparing runs by, flattened for TensorBoard's hparams view."""
    keys = ("backbone", "head", "optimizer", "scheduler", "data")
    picked = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in keys if k in cfg}
    picked["seed"] = cfg.seed
    picked["max_epochs"] = cfg.trainer.get("max_epochs")
    flat: dict = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not str(k).startswith("_"):
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = node if isinstance(node, int | float | str | bool) else str(node)

    walk("", picked)
    return flat


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    # Hydra reports task errors with a traceback; bad input gets one line and exit status 2.
    with exit_on_user_error():
        return train(cfg)


if __name__ == "__main__":
    main()
