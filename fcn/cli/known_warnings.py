"""Warnings a run cannot act on, silenced by message (and only those): a dependency's own
deprecations, or Lightning describing what a preset asked for; and Lightning's advertisements.

Each entry says who warns and why nothing here can fix it; anything else still shows. Entry
points call `ignore_known_warnings()` on import and again in each job (a submitit job runs the
entry's function without importing its module).
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category, why it is silenced)
KNOWN: tuple[tuple[str, type[Warning], str], ...] = (
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        "Lightning's own pytree helper (lightning/pytorch/utilities/_pytree.py) builds torch's "
        "deprecated LeafSpec on every fit; only a Lightning release can change it.",
    ),
    (
        r"Argument ``constant_liar`` is an experimental feature",
        Warning,  # optuna.exceptions.ExperimentalWarning (a plain Warning subclass)
        "conf/hydra/sweeper/async_optuna.yaml turns on TPE's constant_liar on purpose (parallel "
        "workers must not be handed the same parameters); Optuna flags the argument itself.",
    ),
    (
        r"The `srun` command is available on your system but is not used",
        UserWarning,
        "Lightning warns whenever srun is on PATH; fcn's cluster runs start ranks with srun "
        "through hydra/launcher=slurm, and a run without it on such a machine is meant to be "
        "a plain one-process run.",
    ),
    (
        r"The image decoding and encoding capabilities of TorchVision are deprecated",
        DeprecationWarning,
        "torchvision 0.29 points at TorchCodec, which is not a dependency here; decode_jpeg is "
        "what the loader's measured speed rests on (README, Performance).",
    ),
    (
        r"`torch.jit.load` is deprecated",
        FutureWarning,
        "torch 2.14 deprecates TorchScript as a whole; `fcn.export format=torchscript` is a "
        "product format, and its parity check must load the file it wrote.",
    ),
    (
        r"You requested to overfit but enabled train dataloader shuffling",
        UserWarning,
        "Lightning says it turns shuffling off for trainer.overfit_batches: what debug=overfit "
        "asks for (the same batches every epoch), not a problem to report.",
    ),
    (
        r"LogUniformDistribution has been deprecated",
        FutureWarning,
        "hydra-optuna-sweeper builds optuna's LogUniformDistribution for a `tag(log, ...)` "
        "search space (hparams_search=optuna); optuna 3+ deprecates it. The plugin's code, not "
        "fcn's config, would have to change.",
    ),
    (
        r"Checkpoint directory .* exists and is not empty",
        UserWarning,
        "fcn.train writes into a checkpoints/ that holds files only when it resumes a run in "
        "place (every new run gets a new directory; a sweep directory holding another job is "
        "refused), which is what the user asked for.",
    ),
)

# (loggers, message start, why it is dropped): Lightning's INFO lines that are not about the run.
# rank_zero_info logs through whichever of these two lightning_utilities was last pointed at.
KNOWN_LOG_LINES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"),
        "\N{ELECTRIC LIGHT BULB} Tip:",
        "advertisements for Lightning's cloud products (litlogger, litmodels) printed by every "
        "Trainer; nothing a run can act on.",
    ),
)


def ignore_known_warnings() -> None:
    for message, category, _why in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)
    for names, start, _why in KNOWN_LOG_LINES:
        for name in names:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _DropLines) and f.start == start for f in logger.filters):
                logger.addFilter(_DropLines(start))


class _DropLines(logging.Filter):
    """Drops a logger's records whose message starts with `start`."""

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)
