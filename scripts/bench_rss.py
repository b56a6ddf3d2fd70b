"""Peak memory of the default training run, measured from outside (`peak_rss_*`, `peak_pss_*`).

Starts `python -m fcn.train` (capped by Settings.rss_overrides) and polls /proc every 50 ms:
the main process's VmHWM, and the VmRSS and smaps_rollup Pss sums over its process tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench_common import QUICK, REPO_ROOT, Settings, log


def _ppid_map() -> dict[int, int]:
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _tree(root: int) -> list[int]:
    parents = _ppid_map()
    tree, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        tree += frontier
    return tree


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def bench_peak_rss(s: Settings, work: Path) -> dict[str, Any]:
    import resource

    run_dir = work / "rss_run"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    if s is QUICK:  # keep the tiny generated tree out of the user's cache
        env["FCN_CACHE"] = str(work / "cache")
        env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "fcn.train", *s.rss_overrides]
    log(f"peak RSS: {' '.join(cmd[1:])} (cwd {run_dir})")
    peak = {"main_hwm": 0, "tree_rss": 0, "tree_pss": 0, "procs": 0}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tail: list[str] = []
    reader = threading.Thread(target=lambda: tail.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak["main_hwm"] = max(peak["main_hwm"], _status_kb(proc.pid, "VmHWM"))
        peak["tree_rss"] = max(peak["tree_rss"], sum(_status_kb(p, "VmRSS") for p in pids))
        peak["tree_pss"] = max(peak["tree_pss"], sum(_pss_kb(p) for p in pids))
        peak["procs"] = max(peak["procs"], len(pids))
        time.sleep(0.05)
    reader.join(timeout=5)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"fcn.train failed ({proc.returncode}):\n{''.join(tail[-30:])}")
    # Largest single descendant (the main process; its waited-for workers count too).
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    log(f"peak RSS: main {peak['main_hwm'] / 1024:.0f} MB, tree {peak['tree_rss'] / 1024:.0f} MB")
    return {
        "peak_rss_mb": peak["main_hwm"] / 1024,
        "peak_rss_tree_sum_mb": peak["tree_rss"] / 1024,
        "peak_pss_tree_sum_mb": peak["tree_pss"] / 1024,
        "peak_rss_children_maxrss_mb": children_kb / 1024,
        "peak_rss_processes": peak["procs"],
        "peak_rss_run_s": elapsed,
        "peak_rss_note": s.rss_note
        + ". peak_rss_mb = main process VmHWM; tree sums poll VmRSS / smaps_rollup Pss of the "
        "process tree every 50 ms (RSS double-counts pages shared with forked workers, PSS "
        "does not)",
    }
