#!/usr/bin/env python
"""GPU check: run the `gpu` tests and measure the CUDA paths; one JSON document.

    python scripts/bench_gpu.py [--out FILE] [--budget-s 480] [--voc-root DIR] [--only ...]

`bash scripts/gpu_check.sh` sets up .venv and calls this. Sections, each with its own time
budget and all under one deadline (--budget-s from FCN_GPU_CHECK_START, the moment set-up began):

  gpu      the device: torch.cuda.get_device_name, capability, memory, bf16, nvidia-smi clocks
  tests    pytest -m gpu tests/test_gpu.py: counts and every skip's reason
  train    training images/s, FCN-32s/ResNet-18 at 320x480 and FCN-8s/ResNet-50 at 512x512,
           batch 32: fp32, bf16-mixed, bf16 + channels_last, + compile; peak memory; and
           Lightning's fit of the first against a plain loop (scripts/bench_gpu_train.py)
  eval     whole-image validation and fcn-predict images/s on voc_mini val; the GPU's
           confusion matrix against the CPU's on the same checkpoint and images
  loader   the real training loader (data=voc on voc_mini, 320x480 crops, batch 32) at this
           machine's core count, per worker, and against the GPU's training rate
  ddp      validation metrics of a DDP run on every visible GPU against one GPU (NCCL)

Without a GPU it says so, runs the loader and the CPU halves of the comparisons, and names
every part it skipped and why. --dry-run runs every section's code on the CPU at tiny sizes
instead (the gpu tests with FCN_GPU_TESTS_ON_CPU=1, DDP on 2 gloo processes): a check of the
harness before a GPU is at hand; its numbers mean nothing.

Stdout carries only the JSON (progress goes to stderr); the same JSON is written to --out
(default $OUT/gpu_check.json when OUT is set, else outputs/gpu_check.json). Exit status 0
whenever the JSON was written; `failures` lists what failed, `skipped` what did not run and why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_common import REPO_ROOT, loadavg, log, machine_info, quiet_lightning, voc_tree

DEFAULT_VOC_ROOT = Path(
    os.environ.get("FCN_VOC_MINI", REPO_ROOT.parent / "shared" / "data" / "voc_mini")
)
SECTIONS = ("gpu", "tests", "train", "eval", "loader", "ddp")
# Seconds each section may take at most on a GPU (in this order: the loader compares itself with
# train's rate). When set-up left less than their sum, all shrink in proportion.
BUDGET_S = {"gpu": 15, "tests": 150, "train": 120, "loader": 45, "eval": 45, "ddp": 90}
RESERVE_S = 10  # kept back for writing the JSON


class Deadline:
    """The global time guard: seconds left, and a section's share of them."""

    def __init__(self, budget_s: float, started: float) -> None:
        self.end = started + budget_s
        self.factor = 1.0

    def plan(self, sections: Sequence[str]) -> None:
        """Shrink every section's budget alike when less time is left than they add up to."""
        wanted = sum(BUDGET_S[s] for s in sections)
        self.factor = min(1.0, max(self.left(), 0.0) / wanted) if wanted else 1.0

    def left(self) -> float:
        return self.end - time.time() - RESERVE_S

    def share(self, section: str) -> float:
        return max(0.0, min(BUDGET_S[section] * self.factor, self.left()))


class SectionTimeout(Exception):
    """A section ran past its budget (raised from SIGALRM between Python bytecodes)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def alarm(signum, frame):
        raise SectionTimeout(f"ran past its {seconds:.0f} s budget")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def gpu_info() -> dict[str, Any] | None:
    """The GPU's name, capability, memory and clocks; None without CUDA."""
    import subprocess

    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {
        "count": torch.cuda.device_count(),
        "torch_name": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0)),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "bf16_supported": torch.cuda.is_bf16_supported(including_emulation=False),
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    fields = "name,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,driver_version"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        info["nvidia_smi"] = [
            dict(zip(fields.split(","), (v.strip() for v in line.split(","))))
            for line in out.strip().splitlines()
        ]
    except (OSError, subprocess.SubprocessError) as err:
        info["nvidia_smi"] = f"not available ({type(err).__name__}: {err})"
    return info


def run_sections(
    only: Sequence[str],
    deadline: Deadline,
    voc_root: Path,
    work: Path,
    result: dict[str, Any],
    dry: bool = False,
) -> None:
    import torch

    has_gpu = torch.cuda.is_available()
    result["gpu"] = gpu_info() if "gpu" in only else None
    if not has_gpu:
        result["no_gpu"] = "torch.cuda.is_available() is False: no CUDA GPU on this machine"
        what = (
            "every section runs on the CPU (dry run)"
            if dry
            else ("GPU parts are skipped; the loader and the CPU halves run")
        )
        log(f"no CUDA GPU on this machine: {what}")
    if dry:
        os.environ["FCN_GPU_TESTS_ON_CPU"] = "1"  # the pytest subprocess inherits it
    steps: dict[str, Callable[[float], dict[str, Any]]] = {}
    if {"eval", "loader"} & set(only):
        # voc_mini lies beside the repository; a bare GPU machine gets ~500x375 synthetic JPEGs.
        tree = voc_tree(voc_root, work)
        result["data_source"] = tree[2]
    if "tests" in only:
        import bench_gpu_tests

        steps["tests"] = lambda s: bench_gpu_tests.run_gpu_tests(s)
    if "train" in only:
        import bench_gpu_train

        steps["train"] = lambda s: bench_gpu_train.bench_train(
            s, has_gpu, dry, out=result.setdefault("train", {})
        )
    if "loader" in only:
        import bench_gpu_loader

        def loader(seconds: float) -> dict[str, Any]:
            rate = (result.get("train") or {}).get("fcn32s_resnet18_best_images_per_s")
            return bench_gpu_loader.bench_loader(tree, seconds, rate, dry)

        steps["loader"] = loader
    if "eval" in only:
        import bench_gpu_eval

        steps["eval"] = lambda s: bench_gpu_eval.bench_eval_predict(
            tree, work, s, has_gpu, dry, out=result.setdefault("eval", {})
        )
    gpus = torch.cuda.device_count() if has_gpu else 0
    if "ddp" in only and gpus < 2 and not dry:  # decided now: its budget goes to the others
        result["skipped"]["ddp"] = f"DDP needs 2 or more GPUs; {gpus} visible"
    elif "ddp" in only:
        import bench_gpu_ddp

        steps["ddp"] = lambda s: bench_gpu_ddp.bench_ddp(work, s, dry)
    deadline.plan(list(steps))
    for name, step in steps.items():
        seconds = deadline.share(name)
        if seconds < 5:
            result["skipped"][name] = f"time guard: {deadline.left():.0f} s left of the budget"
            continue
        log(f"section {name} (budget {seconds:.0f} s)")
        started = time.perf_counter()
        try:
            with time_limit(seconds):
                result[name] = step(seconds)
        except SectionTimeout as err:  # a budget matter; train and eval keep what they measured
            result["skipped"][f"{name}.rest"] = f"time limit: {err}"
        except Exception as err:  # a failing section is reported; the others still run
            result["failures"][name] = f"{type(err).__name__}: {err}"
            log(traceback.format_exc())
        result.setdefault("section_s", {})[name] = round(time.perf_counter() - started, 1)
        for key, why in (result.get(name) or {}).pop("skipped", {}).items():
            result["skipped"][f"{name}.{key}"] = why


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = (
        Path(os.environ["OUT"], "gpu_check.json")
        if os.environ.get("OUT")
        else (REPO_ROOT / "outputs" / "gpu_check.json")
    )
    parser.add_argument("--out", type=Path, default=default_out, help="JSON file to write")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=480.0,
        help="the whole check, set-up included, ends within this (seconds)",
    )
    parser.add_argument("--voc-root", type=Path, default=DEFAULT_VOC_ROOT, help="voc_mini tree")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="without a GPU: run every section on the CPU at tiny sizes (checks the harness)",
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := sorted(set(only) - set(SECTIONS)):
        parser.error(f"--only: unknown sections {unknown}; choose from {','.join(SECTIONS)}")
    started = float(os.environ.get("FCN_GPU_CHECK_START") or time.time())
    deadline = Deadline(args.budget_s, started)
    sys.path.insert(0, str(REPO_ROOT))
    result: dict[str, Any] = {"dry_run": args.dry_run, "skipped": {}, "failures": {}}

    def stop(signum, frame):  # an outer `timeout` or Ctrl+C: write what there is
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
        quiet_lightning()
        result["machine"] = machine_info()
        result["load_start"] = loadavg()
        try:
            with tempfile.TemporaryDirectory(prefix="fcn-gpu-check-") as tmp:
                run_sections(only, deadline, args.voc_root, Path(tmp), result, args.dry_run)
        except KeyboardInterrupt:
            result["failures"]["interrupted"] = "stopped by a signal; the JSON holds what ran"
        result["load_end"] = loadavg()
        result["setup_s"] = round(float(os.environ.get("FCN_GPU_CHECK_SETUP_S", 0)), 1)
        result["total_s"] = round(time.time() - started, 1)
        result["ok"] = not result["failures"]
    text = json.dumps(result, indent=2, default=str)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
