"""`python -m fcn.train [overrides]`: compose the config, build objects, fit, test, summarise."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fcn.cli.entry import hydra_entry
from fcn.data.stats import resolve_class_weights
from fcn.deploy.model_files import check_checkpoint
from fcn.jobs.distributed import launched_ranks_cleanup
from fcn.jobs.job_record import JobRecord, last_val_metrics, start_job
from fcn.jobs.lifecycle import exit_interrupted, prepare_job
from fcn.jobs.optuna_study import current_trial
from fcn.jobs.pruning import TrialPruning
from fcn.jobs.signals import JobSignals
from fcn.training.callbacks import InterruptCheckpoint, RunLengthFit
from fcn.training.checkpoint_io import AtomicCheckpointIO, resolve_resume
from fcn.training.loggers import log_location, log_run_end

# Launched DDP ranks run this file too: only rank 0 talks.
say = rank_zero_only(print)


def build_callbacks_and_loggers(cfg: DictConfig) -> tuple[list, list]:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    return callbacks, loggers


def train(cfg: DictConfig) -> float:
    """Fit and test one configuration; returns the best val mIoU (what sweepers maximise)."""
    ckpt_path = resolve_resume(cfg.get("ckpt_path"), cfg.get("resume"))
    prepare_job(cfg, ckpt_path)
    # A job that runs again in its own directory (re-run sweep, requeued job) continues there.
    ckpt_path, finished_value = start_job(cfg.paths.output_dir, ckpt_path)
    if finished_value is not None:
        return finished_value
    trainer_ref: list[L.Trainer] = []
    with launched_ranks_cleanup(trainer_ref), JobRecord(cfg) as record:
        return _train(cfg, ckpt_path, trainer_ref, record)


def _train(cfg: DictConfig, ckpt_path: str | None, trainer_ref: list, record: JobRecord) -> float:
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    # Generate/validate the data now, so bad input stops before any model or training step.
    datamodule.prepare_data()
    datamodule.setup("fit")

    # The data's classes (names, colours, void value) go into the checkpoint with the model.
    module = instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        **datamodule.labels.hyper_parameters(),
        class_weights=resolve_class_weights(cfg.model.get("class_weights"), datamodule),
        _convert_="all",
    )
    if not cfg.get("compile"):
        # Lightning's start-up summary counts FLOPs on one training crop (batch 1); without an
        # example it prints `Total FLOPs: 0`. (A compiled model would compile for this shape.)
        module.example_input_array = torch.zeros(1, 3, *(cfg.data.get("crop_size") or (512, 512)))
    if ckpt_path:
        check_checkpoint(ckpt_path, module)
    elif cfg.get("init_from"):
        copied = module.load_matching_weights(cfg.init_from)
        say(f"init_from: copied {len(copied)} tensors from {cfg.init_from}")

    callbacks, loggers = build_callbacks_and_loggers(cfg)
    interrupt = InterruptCheckpoint(Path(cfg.paths.output_dir) / "checkpoints")
    signals = JobSignals()  # SLURM/submitit: pre-emption and time limits stop at a batch end
    trial = current_trial()  # an Optuna search worker's trial: report val/mIoU, maybe prune
    pruning = [TrialPruning(trial)] if trial is not None else []
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, interrupt, signals, RunLengthFit(), *pruning],
        logger=loggers or False,
        default_root_dir=cfg.paths.output_dir,
        plugins=[AtomicCheckpointIO()],  # every checkpoint, interrupt one included
    )
    trainer_ref.append(trainer)
    try:
        with signals:
            # weights_only: Lightning's own read of the checkpoint runs no code either.
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        exit_interrupted(trainer, interrupt, cfg, signals, record)
    if signals.stop_pending(trainer):  # the signal came as fit ended: the job stops all the same
        exit_interrupted(trainer, interrupt, cfg, signals, record)
    final_val = last_val_metrics(trainer)  # before test() replaces the callback metrics
    if pruning and pruning[0].pruned:
        value = final_val.get("val/mIoU", float("nan"))
        record.prune(value, final_val, global_step=trainer.global_step, epoch=trainer.current_epoch)
        return value

    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best_score = (
        trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    )
    best = float(best_score) if best_score is not None else float("nan")
    kept = best_path or _last_checkpoint(cfg)  # no validation ran: the run's end is what it kept
    test_metrics = {}
    if cfg.test_after_fit and not trainer.interrupted:
        results = trainer.test(
            module, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True
        )
        test_metrics = results[0] if results else {}
    final = {"hparams/best_val_mIoU": best}
    final.update({f"hparams/{k}": v for k, v in test_metrics.items() if "IoU/" not in k})
    log_run_end(loggers, _flat_hparams(cfg), final, trainer.global_step, best_path)
    record.finish(
        best,
        {"best_val_mIoU": best, **final_val, **test_metrics},
        global_step=trainer.global_step,
        checkpoint=kept or None,
    )
    if trainer.is_global_zero:
        log_dir = log_location(loggers, cfg.paths.output_dir)
        print(f"best val/mIoU={best:.4f} checkpoint={kept or 'none'} logs={log_dir}", flush=True)
    return best


def _last_checkpoint(cfg: DictConfig) -> str:
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else ""


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


@hydra_entry("train")
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    main()
