"""fcn-eval under DDP: each image is scored on exactly one rank, so the metrics equal the 1-process
ones exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.processes import Main, free_port
from helpers.trained import eval_cfg, voc

from fcn.core.errors import DataError
from fcn.data.eval_sharding import ExactEvalSampler
from fcn.evaluate import evaluate


# ---- fcn-eval under DDP -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splits(tmp_path_factory, tiny_voc) -> Path:
    """The tiny tree with splits n1, n4 and n5 (1, 4 and 5 images of different sizes)."""
    root = tmp_path_factory.mktemp("splits") / "VOC"
    shutil.copytree(tiny_voc, root)
    lists = root / "ImageSets" / "Segmentation"
    ids = (lists / "val.txt").read_text().split() + (lists / "train.txt").read_text().split()
    for n in (1, 4, 5):
        (lists / f"n{n}.txt").write_text("\n".join(ids[:n]) + "\n")
    return root


def ranks(argv: list[str], world: int, run_dir: Path, cwd: Path, env: dict) -> list[Main]:
    """`world` processes of one DDP job started outside Lightning (as torchrun or srun would):
    Lightning reads LOCAL_RANK, WORLD_SIZE, MASTER_* and launches nothing itself."""
    dist = {"NODE_RANK": "0", "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1"}
    dist["MASTER_PORT"] = str(free_port())
    ddp = ["trainer=ddp", f"trainer.devices={world}", f"hydra.run.dir={run_dir}"]
    return [
        Main(
            "fcn.evaluate",
            [*argv, *ddp, *(["hydra.output_subdir=null", f"hydra.job.name=rank{r}"] if r else [])],
            cwd,
            LOCAL_RANK=str(r),
            **dist,
            **env,
        )
        for r in range(world)
    ]


@pytest.mark.slow
def test_ddp_evaluate_equals_one_process_exactly(tmp_path, ckpt, splits, env):
    single = {}
    for n in (1, 4, 5):
        evaluate(eval_cfg(ckpt, splits, tmp_path / f"single_n{n}", f"split=n{n}"))
        single[n] = json.loads((tmp_path / f"single_n{n}" / "metrics.json").read_text())
        assert single[n]["num_images"] == n

    argv = lambda n: [f"ckpt_path={ckpt}", *voc(splits), f"split=n{n}"]  # noqa: E731
    for world in (2, 3):
        for n in (1, 4, 5):  # n=1: ranks without an image; 4 and 5: uneven shares
            run_dir = tmp_path / f"ddp{world}_n{n}"
            for r, rank in enumerate(ranks(argv(n), world, run_dir, tmp_path, env)):
                assert rank.wait().code == 0, rank.err[-3000:]
                assert f"GLOBAL_RANK: {r}, MEMBER: {r + 1}/{world}" in rank.err  # really DDP
            ddp = json.loads((run_dir / "metrics.json").read_text())
            assert ddp == single[n], (world, n)  # every key, num_images included

    # The real command line, Lightning launching rank 1 (5 images gave images=6 before).
    (tmp_path / "cli").mkdir()
    cli = subprocess.run(
        [sys.executable, "-m", "fcn.evaluate", *argv(5), "trainer=ddp", "trainer.devices=2"],
        cwd=tmp_path / "cli",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "images=5 " in cli.stdout
    (metrics,) = (tmp_path / "cli" / "outputs").glob("*/*/metrics.json")
    assert json.loads(metrics.read_text()) == single[5]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [1, 4, 5])
def test_exact_eval_sampler_gives_each_image_to_one_rank(n, world):
    shares = [list(ExactEvalSampler(range(n), world, rank)) for rank in range(world)]
    assert sorted(i for share in shares for i in share) == list(range(n))
    assert [len(ExactEvalSampler(range(n), world, r)) for r in range(world)] == list(
        map(len, shares)
    )


def test_validation_split_smaller_than_the_world_is_one_clear_error(monkeypatch, tiny_datamodule):
    # Training's validation syncs inside Lightning's loop: every rank needs an image.
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *args: 5)
    tiny_datamodule.setup("validate")
    with pytest.raises(DataError, match="the val split has 4 images but the run has 5 processes"):
        tiny_datamodule.val_dataloader()
