"""trainer.sync_batchnorm is turned off on CPU (fcn/jobs/lifecycle.py) because torch's
SyncBatchNorm rejects CPU tensors even under a gloo process group. This pins that reason: when
a torch release accepts them, this test fails, and CPU runs can keep SyncBatchNorm (then test
2-process gloo DDP against a 1-process run with the full batch). The GPU path:
tests/test_gpu.py::test_sync_batchnorm_under_ddp_on_gpus."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forward(rank: int, port: int, errors) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.nn.SyncBatchNorm(3)(torch.randn(2, 3, 4, 4))
        errors[rank] = ""
    except ValueError as err:
        errors[rank] = str(err)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes
def test_sync_batchnorm_still_rejects_cpu_tensors_under_gloo():
    errors = mp.Manager().dict()
    mp.spawn(_forward, args=(_free_port(), errors), nprocs=2)
    assert all("expected input tensor to be on GPU" in errors[r] for r in (0, 1)), dict(errors)
