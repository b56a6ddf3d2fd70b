"""How tests/test_readme.py runs README.md's commands: the table a README change is checked by.

Every fenced `bash` command of README.md (a `\\` continuation joined into one line, the trailing
`# comment` dropped) runs in order, in one temporary directory, as printed, with

- the placeholders below replaced (`data.root=...`, `ckpt_path=...`, an example run directory);
- an optional part in brackets (`[data=voc data.root=...]`) left out;
- tiny-budget overrides appended (TINY, by entry point and data), except keys the command sets
  itself, then the command's own EXTRA overrides (those win).

A command that is not in SKIP runs: a new README command needs no entry here unless it cannot
run on a CPU in a minute (then add it to SKIP with the reason) or needs a different budget
(EXTRA). A command that fails makes the test fail, naming it and this file.

Fenced `python` blocks run too, in README order (as files, in the same directory), unless
listed in PYTHON_SKIP by their first line.
"""

from __future__ import annotations

# Command as printed (comment dropped, whitespace collapsed) -> why it does not run here.
DOWNLOAD = "downloads VOC 2012 and/or SBD (1.9 + 1.4 GB); tests/test_data_prepare.py covers it"
NEEDS_AUG = "needs SBD's train_aug labels, made by `fcn-data aug` (a download)"
SLURM = "submits to SLURM (no cluster here); `pytest -m slurm` submits real jobs"
GPUS = "needs several GPUs or nodes"
COVERED = "budget: run by {}"
YOUR_DATA = (
    "the README's worked example on the reader's own data tree (mydata/); "
    "tests/test_folder_data.py and tests/test_dataset_classes.py run the same steps on "
    "generated trees"
)
GPU_CHECK = "needs a GPU to measure; on a CPU it takes minutes (tests/test_gpu.py, dry run in CI)"
SKIP: dict[str, str] = {
    "bash scripts/train.sh": "creates .venv, installs the package, then the full 5-minute "
    "default run; `python -m fcn.train` below is the same training (tiny budget)",
    "bash scripts/test.sh": "runs the whole test suite, this test included",
    "python -m fcn.train data=voc_aug data.root=...": NEEDS_AUG,
    "fcn-data aug": DOWNLOAD,
    "python -m fcn.train data=voc_aug": NEEDS_AUG,
    "fcn-data voc": DOWNLOAD,
    "fcn-data sbd": DOWNLOAD,
    "mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db": "a web server that runs until "
    "stopped (and needs the full mlflow package)",
    "python scripts/benchmark.py": "the full benchmark, about 5 minutes",
    "python scripts/benchmark.py --quick": "about a minute; tests/test_benchmark.py runs it",
    "python scripts/benchmark.py --only eval,forward --out bench.json": "a measurement, minutes",
    "python scripts/ablation.py": "the ablation: seven 10-minute trainings on voc_mini; "
    "tests/test_benchmark.py checks its rows and table",
    "python scripts/ablation.py ce_dice+aux": "a 17-minute training on voc_mini",
    "python scripts/ablation.py seed43+ce_dice": "a 13-minute training on voc_mini",
    "python scripts/ablation.py --table": "reads the ablation's results (outputs/ablation/), "
    "which no command here makes; tests/test_benchmark.py builds the table",
    "python -m fcn.train trainer=ddp trainer.devices=4": GPUS,
    "python -m fcn.train trainer=ddp trainer.devices=4 trainer.num_nodes=2": GPUS,
    "python -m fcn.train -m head=fcn32s,fcn8s trainer=ddp trainer.devices=2": "two jobs of two "
    "DDP ranks each (~1 min here); the 2-rank CPU command above and tests/test_scaleout.py "
    "cover it",
    "python -m fcn.train -m hydra/launcher=slurm trainer=ddp trainer.devices=4 "
    "trainer.num_nodes=1 hydra.launcher.partition=gpu hydra.launcher.timeout_min=600 "
    "hydra.launcher.cpus_per_task=6 hydra.launcher.mem_gb=128 data=voc data.num_workers=5 "
    "head=fcn32s,fcn8s optimizer.lr=0.01,0.001": SLURM,
    "srun python -m fcn.train trainer=ddp trainer.devices=4 "
    "hydra.run.dir=outputs/slurm-$SLURM_JOB_ID": "runs inside a SLURM allocation with 4 GPUs",
    "python -m fcn.train -m hydra/launcher=slurm seed=1,2,3 head=fcn32s,fcn8s "
    "hydra.sweep.dir=outputs/multirun/heads": SLURM,
    "fcn-report outputs/multirun/heads": "reads the sweep the SLURM command above makes; the "
    "same report runs after the synthetic sweep below (python -m fcn.report ...)",
    "sudo bash scripts/slurm_local.sh": "installs and starts SLURM's daemons as root",
    # Budget (each command is a new process: ~5 s of imports on 2 idle cores, ~10 s loaded).
    # These run elsewhere in the suite, in the same form or in-process:
    "python -m fcn.train --config-dir my_conf data=mine trainer.max_epochs=1": COVERED.format(
        "tests/test_packaging.py (a user config directory)"
    ),
    "python -m fcn.train hydra.searchpath=[file://$PWD/my_conf] data=mine trainer.max_epochs=1": (
        COVERED.format("tests/test_packaging.py (a user config directory)")
    ),
    "python -m fcn.train backbone._target_=mypkg.nets.MyBackbone head._target_=mypkg.nets.MyHead": (
        "an example: mypkg is the reader's own package; tests/test_custom_modules.py trains, "
        "refuses and loads such a model"
    ),
    "fcn-data check data=folder data.root=mydata data.classes=classes.txt": YOUR_DATA,
    "fcn-data stats data=folder data.root=mydata data.classes=classes.txt": YOUR_DATA,
    "python -m fcn.train data=folder data.root=mydata data.classes=classes.txt "
    "'data.palette=[[10,200,10],[0,90,0],[200,40,40],[30,60,220]]' model.class_weights=auto": (
        YOUR_DATA
    ),
    "python -m fcn.evaluate ckpt_path=outputs/<run>/checkpoints/best-*.ckpt data=folder "
    "data.root=mydata": YOUR_DATA,
    "python -m fcn.predict ckpt_path=outputs/<run>/checkpoints/best-*.ckpt "
    "input=mydata/images/val": YOUR_DATA,
    "bash scripts/gpu_check.sh": GPU_CHECK,
    "FCN_PYTHON=.venv/bin/python bash scripts/gpu_check.sh": GPU_CHECK,
    "python scripts/bench_gpu.py --dry-run --budget-s 900": "the GPU check's dry run on the CPU, "
    "about 5 minutes; .ci/run dry-runs the gpu tests",
    "python -m pytest -m gpu": "pytest inside pytest; .ci/run runs the gpu tests (a dry run)",
    "python -m fcn.train -m hparams_search=optuna hydra/launcher=slurm trainer.devices=1 "
    "hydra.sweeper.n_trials=64 hydra.sweeper.n_jobs=8 hydra.sweeper.pruner=median": SLURM,
    "fcn-report outputs/multirun/<date>/<time>": "reads the SLURM search above; "
    "tests/test_optuna_search.py reports a local search",
    "python -m fcn.train logger=mlflow": COVERED.format("tests/test_tracking.py (MLflow)"),
    "python -m fcn.train logger=wandb": COVERED.format("tests/test_tracking.py (W&B offline)"),
    "python -m fcn.train logger=many": COVERED.format(
        "the logger=many sweep below and tests/test_tracking.py"
    ),
    "python -m fcn.train --help": COVERED.format(
        "tests/test_console_scripts.py (fcn-train --help)"
    ),
    "python -m fcn.train debug=overfit": COVERED.format("tests/test_tracking.py (debug presets)"),
    "python -m fcn.train debug=profiler": COVERED.format("tests/test_tracking.py (debug presets)"),
    "python -m fcn.train trainer=ddp trainer.accelerator=cpu trainer.devices=2": COVERED.format(
        "tests/test_scaleout.py (2 CPU ranks)"
    ),
    "python -m fcn.train -m head=fcn32s,fcn8s": COVERED.format(
        "the 3-head sweep of README.md's Train section"
    ),
    "python -m fcn.train -m hydra/launcher=local head=fcn32s,fcn8s": COVERED.format(
        "tests/test_sweep_names.py and tests/test_scaleout.py (submitit's local executor)"
    ),
    "python -m fcn.train hparams_search=optuna hydra.sweeper.n_trials=30 "
    "hydra.sweep.dir=outputs/multirun/search": COVERED.format(
        "the same search above (without hydra.sweep.dir); tests/test_cluster.py continues one"
    ),
    "python -m fcn.train -m hydra/launcher=slurm hydra.launcher.gpus_per_node=null "
    "hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=null head=fcn32s,fcn8s": SLURM,
    "sudo bash scripts/slurm_local.sh stop": "stops SLURM's daemons as root",
}

# Fenced python blocks by their first line -> why they do not run here.
PYTHON_SKIP: dict[str, str] = {
    "import json, onnx, torch": "also reads model.pt (format=torchscript), which no README "
    "command writes; tests/test_export.py reads the metadata of all three formats",
}

# Placeholders (regular expressions) -> what they become: {voc} a small VOC tree (the first
# train and val pairs of the bundled voc_mini), {ckpt} / {run} the newest last.ckpt written so
# far for a model like the command's (its data's class count; for fcn.train its backbone and
# head) and that checkpoint's run directory.
PLACEHOLDERS: tuple[tuple[str, str], ...] = (
    (r"(?<=data\.root=)(\.\.\.|/path/to/VOCdevkit/VOC2012)(?=\s|$)", "{voc}"),
    (r"outputs/\.\.\./checkpoints/last\.ckpt", "{ckpt}"),
    (r"(?<=ckpt_path=)\.\.\.(?=\s|$)", "{ckpt}"),
    (r"outputs/\d{4}-\d\d-\d\d/[\d-]+/checkpoints/last\.ckpt", "{ckpt}"),
    (r"outputs/\d{4}-\d\d-\d\d/[\d-]+", "{run}"),
)
# Files the README's commands take as the user's own: name -> voc_mini val images copied there.
USER_FILES = {"photo.jpg": 1, "photos": 2}

# Tiny budgets by entry point; data keys by the data the command uses ("voc": data=voc or
# voc_aug, or a preset that picks one; "synthetic": no data= or data=synthetic; "other").
TINY_DATA = {
    "synthetic": [
        "data.synthetic.num_train=4",
        "data.synthetic.num_val=2",
        "data.synthetic.size=[64,64]",
        "data.num_workers=0",
    ],
    "voc": ["data.root={voc}", "data.num_workers=0"],
    "other": [],
}
TINY = {
    "train": [
        "data.crop_size=[64,64]",
        "data.batch_size=2",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    ],
    "eval": [],
    "export": [],
    "predict": [],
}

# Command as printed -> (overrides appended last, why).
EXTRA: dict[str, tuple[list[str], str]] = {
    "python -m fcn.train experiment=d2l_fcn32s_resnet18 data.root=...": (
        ["backbone.pretrained=false"],
        "the preset downloads torchvision's ImageNet ResNet-18; no network here",
    ),
    "python -m fcn.train hparams_search=optuna hydra.sweeper.n_trials=30": (
        ["hydra.sweeper.n_trials=2"],
        "2 trials, not 30",
    ),
    "python -m fcn.train resume=outputs/2025-01-01/12-00-00-000000": (
        ["trainer.max_epochs=2"],
        "one epoch more than the run it resumes",
    ),
    "python -m fcn.train ckpt_path=outputs/2025-01-01/12-00-00-000000/checkpoints/last.ckpt": (
        ["trainer.max_epochs=3"],
        "one epoch more than the resume before it",
    ),
    "python -m fcn.train -m seed=1,2,3 head=fcn32s,fcn8s data.synthetic.num_train=96 "
    "data.synthetic.num_val=24 data.synthetic.size=[64,64] data.crop_size=[64,64] "
    "data.batch_size=8 trainer.max_epochs=5 hydra.sweep.dir=outputs/multirun/heads": (
        ["trainer.max_epochs=1"],
        "1 epoch of 2 batches per job instead of 5 epochs",
    ),
    "fcn-data check": (["--root", "{voc}"], "the small VOC tree instead of ./data (absent)"),
}
