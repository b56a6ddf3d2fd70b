"""How fcn-predict spreads its work over the machine: the device, images per batch, decoding
workers, and lanes (batches taken through network, argmax and file writing at once, each by
its own thread)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from fcn.core.errors import ConfigError
from fcn.core.validate import whole_number_or_auto

# Lanes on CPU at most: each holds one batch's activations (VGG-16 at 500 x 375: ~1 GB).
MAX_CPU_LANES = 4


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a torch device: use auto, cpu or cuda") from None


def _cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def spare_cores(device: torch.device) -> int:
    """Cores a forward on `device` leaves free: all of them beside a GPU; on CPU those torch's
    own threads do not use."""
    return _cores() if device.type != "cpu" else max(0, _cores() - torch.get_num_threads())


def decoding_workers(cfg: Mapping[str, Any], device: torch.device) -> int:
    """`num_workers`, or for `auto`: 2 beside a GPU; on CPU as many (at most 2) as there are
    spare cores: a worker's decoding on the forward's cores costs more than it saves."""
    value = whole_number_or_auto(cfg.get("num_workers"), "num_workers", minimum=0)
    if value != "auto":
        return value
    return 2 if device.type != "cpu" else min(2, spare_cores(device))


def batch_size_for(cfg: Mapping[str, Any], device: torch.device, backend: str) -> int:
    """`batch_size`, or for `auto`: 1 where torch runs the network on CPU (there a batch of
    VOC images runs slower per image than one at a time: its activations outgrow the caches),
    else 4 (ONNX Runtime on CPU is faster per image in batches). The README's Performance
    section has the measurements."""
    value = whole_number_or_auto(cfg.get("batch_size"), "batch_size")
    if value == "auto":
        return 1 if device.type == "cpu" and backend != "onnx" else 4
    return value


def prediction_lanes(device: torch.device, backend: str) -> tuple[int, int]:
    """(lanes, intra-op threads per lane): how many batches go through network, argmax and
    file writing at once, each in its own thread.

    Beside a GPU 2 lanes: one writes its files while the other's batch is on the GPU. On CPU,
    where torch runs the network, torch's threads are split into up to MAX_CPU_LANES lanes: a
    team of threads sharing one forward waits for its slowest member at every op, so files
    written or images decoded beside it stall the whole team; lanes of their own each run
    single-threaded through forward and writing (2 lanes x 1 thread on 2 cores: ~10% more
    images/s than 1 x 2). ONNX Runtime keeps its own thread pool: 1 lane.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu":
        return 2, threads
    if backend == "onnx":
        return 1, threads
    lanes = max(1, min(threads, MAX_CPU_LANES))
    return lanes, max(1, threads // lanes)


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to `count` inside, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
