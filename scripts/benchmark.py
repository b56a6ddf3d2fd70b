#!/usr/bin/env python
"""Performance benchmark: framework overhead, data loading, evaluation, head overhead, memory.

    python scripts/benchmark.py [--quick] [--out FILE] [--voc-root DIR] [--threads N]

Prints one JSON object on stdout (progress goes to stderr) and writes it to --out. Every
timing is a median over repetitions taken after warm-up; where two things are compared they
are measured alternately in the same process, so background load hits both alike.

  framework_ratio        Trainer.fit throughput / plain PyTorch loop (same model, optimizer,
                         poly schedule, in-memory batches, thread count)         target >= 0.95
  loader_images_per_s    training DataLoader over real VOC JPEGs, 2 workers     target >= 150
  loader_to_train_ratio  loader / FCN-8s ResNet-18 batch-8 training throughput  target >= 3
  eval_to_forward_ratio  Trainer.validate (batch 1, whole image, metrics) /
                         bare no_grad forward on the same tensors                target >= 0.9
  forward_ratio_vs_seed  our FCN-32s ResNet-18 forward / the seed's nn.Sequential target >= 0.97
  peak_rss_mb            `python -m fcn.train` (defaults, capped), measured from outside
                                                                                 target <= 3000
  realdata_val_mIoU      experiment=voc_mobilenet_cpu on voc_mini (scripts/bench_realdata.py;
                         ~12 min, only with --only realdata)  target >= 0.35 within 900 s
  predict_images_per_s_torch / _onnx, predict_to_forward_ratio: fcn-predict end to end /
                         bare forward (scripts/bench_predict.py)                 target >= 0.85

Each measurement is a module beside this file, which this one runs in turn: bench_rss.py,
bench_framework.py, bench_loader.py (loader and batch-8 training), bench_eval.py,
bench_forward.py, bench_realdata.py, bench_predict.py; bench_common.py holds the settings and
helpers they share.

--quick shrinks every size and repetition count (numbers are then meaningless; the keys and
types are the same) so the whole run takes well under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Beside this file: scripts/ is on sys.path as the script's directory.
from bench_common import FULL, QUICK, REPO_ROOT, loadavg, machine_info, quiet_lightning, voc_tree
from bench_eval import bench_eval
from bench_forward import bench_forward_vs_seed
from bench_framework import bench_framework
from bench_loader import bench_loader_vs_train
from bench_predict import bench_predict
from bench_rss import bench_peak_rss

DEFAULT_VOC_ROOT = Path(
    os.environ.get("FCN_VOC_MINI", REPO_ROOT.parent / "shared" / "data" / "voc_mini")
)

TARGETS = {
    "framework_ratio": (">=", 0.95),
    "loader_images_per_s": (">=", 150.0),
    "loader_to_train_ratio": (">=", 3.0),
    "eval_to_forward_ratio": (">=", 0.9),
    "forward_ratio_vs_seed": (">=", 0.97),
    "peak_rss_mb": ("<=", 3000.0),
    # The tree's real footprint: RSS sums count every shared page (torch's libraries, forked
    # copy-on-write memory) once per process.
    "peak_pss_tree_sum_mb": ("<=", 3000.0),
    "realdata_val_mIoU": (">=", 0.35),
    "realdata_wall_s": ("<=", 900.0),
    "predict_to_forward_ratio": (">=", 0.85),
}


SECTIONS = ("rss", "framework", "loader", "eval", "forward", "predict")
LONG_SECTIONS = ("realdata",)  # a whole training run: only when named in --only


def run(
    quick: bool, voc_root: Path, threads: int | None, only: Sequence[str] = SECTIONS
) -> dict[str, Any]:
    import torch

    s = QUICK if quick else FULL
    if threads is None and quick:
        # Quick runs share the CPU with test suites; one thread avoids OpenMP barrier stalls
        # under contention (2 threads on 2 busy cores ran tiny convs ~20x slower).
        threads = 1
    if threads:
        torch.set_num_threads(threads)
    quiet_lightning()
    started = time.perf_counter()
    result: dict[str, Any] = {"quick": quick, "machine": machine_info(), "load_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="fcn-bench-") as tmp:
        work = Path(tmp)
        # First, before this process has any DataLoader workers of its own (RUSAGE_CHILDREN).
        if "rss" in only:
            result.update(bench_peak_rss(s, work))
        if "framework" in only:
            result.update(bench_framework(s, work))
        if {"loader", "eval", "predict"} & set(only):
            root, num_classes, source = voc_tree(voc_root, work)
            result["data_source"] = source
        if "loader" in only:
            result.update(bench_loader_vs_train(s, root, num_classes))
        if "eval" in only:
            result.update(bench_eval(s, root, num_classes, work))
        if "forward" in only:
            result.update(bench_forward_vs_seed(s))
        if "realdata" in only:
            import bench_realdata  # imports Lightning: only when asked for

            result.update(bench_realdata.measure(quick, voc_root, work / "realdata"))
        if "predict" in only:
            result.update(bench_predict(quick, root, num_classes, work))
    result["load_end"] = loadavg()
    result["total_s"] = time.perf_counter() - started
    result["targets_met"] = {
        key: (result[key] >= bound if op == ">=" else result[key] <= bound)
        for key, (op, bound) in TARGETS.items()
        if key in result
    }
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs (<1 min)")
    parser.add_argument("--out", default="benchmark.json", help="JSON file to write")
    parser.add_argument("--voc-root", type=Path, default=DEFAULT_VOC_ROOT, help="VOC tree")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (torch's default; 1 with --quick)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS + LONG_SECTIONS)} (default: "
        f"{','.join(SECTIONS)})",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SECTIONS + LONG_SECTIONS))
    if unknown:
        choices = ",".join(SECTIONS + LONG_SECTIONS)
        parser.error(f"--only: unknown sections {unknown}; choose from {choices}")
    sys.path.insert(0, str(REPO_ROOT))  # `python scripts/benchmark.py` without installing
    # Lightning and friends print to stdout; stdout carries only the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args.quick, args.voc_root, args.threads, only)
    text = json.dumps(result, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
