"""Warnings a run cannot act on, silenced by message (and only those): a dependency's own
deprecations, or Lightning describing what a preset asked for.

Each entry says who warns and why nothing here can fix it; anything else still shows. Entry
points call `ignore_known_warnings()` on import.
"""

from __future__ import annotations

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
)


def ignore_known_warnings() -> None:
    for message, category, _why in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)
