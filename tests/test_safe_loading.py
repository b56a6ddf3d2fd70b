"""Loading a checkpoint never runs code: every entry point refuses a file holding anything but
tensors and plain data, in one line.
"""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from helpers.processes import Main, one_error_line, tiny_train
from helpers.trained import voc


# ---- loading never runs code ------------------------------------------------------------------
class _Payload:
    """Pickles as a call to os.system: what a hostile `.ckpt` can hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_checkpoint_with_code_is_refused_by_every_entry_point(tmp_path, ckpt, tiny_voc, env):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save({**state, "x": _Payload(marker)}, evil)  # real weights: otherwise acceptable
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is live: unpickling runs it
    assert marker.exists()
    marker.unlink()
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(evil, run_dir / "checkpoints" / "last.ckpt")
    image = next((tiny_voc / "JPEGImages").glob("val_*.jpg"))

    cases = {
        "evaluate": ("fcn.evaluate", [f"ckpt_path={evil}", *voc(tiny_voc)], evil),
        "export": ("fcn.export", [f"ckpt_path={evil}", "format=torchscript"], evil),
        "train ckpt_path": ("fcn.train", [*tiny_train(tiny_voc), f"ckpt_path={evil}"], evil),
        "train resume": (
            "fcn.train",
            [*tiny_train(tiny_voc), f"resume={run_dir}"],
            run_dir / "checkpoints" / "last.ckpt",
        ),
        "train init_from": ("fcn.train", [*tiny_train(tiny_voc), f"init_from={evil}"], evil),
    }
    runs = {
        name: Main(
            module, [*argv, f"hydra.run.dir={tmp_path / name.replace(' ', '_')}"], tmp_path, **env
        )
        for name, (module, argv, _) in cases.items()
    }
    # fcn-predict, as in the report that found it, as a real command line.
    predict = subprocess.run(
        [sys.executable, "-m", "fcn.predict", f"ckpt_path={evil}", f"input={image}"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = {name: (run.wait().code, run.err) for name, run in runs.items()}
    results["predict"] = (predict.returncode, predict.stderr)
    cases["predict"] = ("fcn.predict", [], evil)
    for name, (code, err) in results.items():
        line = one_error_line(err)
        assert code == 2, (name, err[-2000:])
        assert str(cases[name][2]) in line and UNSAFE in line and "posix.system" in line, name
    assert not marker.exists()


def test_own_checkpoints_need_no_allowed_types(ckpt):
    # Everything fcn writes (hyper-parameters, loops, callbacks, schedulers) is plain data.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []


UNSAFE = "may be unsafe or not an fcn checkpoint"
