"""The model ablation on real photos: `experiment=voc_mobilenet_cpu` on voc_mini, one change at
a time, same budget (20 epochs) and seed, run one after another and timed as a user runs them.

    python scripts/ablation.py                          # every single change: ~75 min, 2 idle cores
    python scripts/ablation.py preset seed43            # named rows only
    python scripts/ablation.py class_weights+ema        # a combination: the rows' overrides joined
    python scripts/ablation.py --table                  # print the table of the rows done so far

Each row is `scripts/bench_realdata.py`'s measurement (the user's command in a subprocess, its
per-epoch timer) with the row's overrides added; its result goes to `<out>/<row>.json` and a
row whose JSON exists is not run again, so an interrupted ablation goes on where it stopped (the
interrupted row's folder is kept as `<row>.unfinished-<time>` and that row runs again).
`seed43` is the preset with another seed: the gap between it and `preset` is the run-to-run
noise a change has to beat.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

ROWS: dict[str, tuple[str, ...]] = {
    "preset": ("seed=42",),
    "seed43": ("seed=43",),
    "class_weights": ("seed=42", "model.class_weights=auto"),
    "ce_dice": ("seed=42", "loss=ce_dice"),
    # mmsegmentation keeps at least 100k of a 512x1024 crop (19%); 10k of a 256x256 crop is 15%
    "ohem": ("seed=42", "loss=ohem", "loss.min_kept=10000"),
    # 740 optimizer steps: decay 0.99 averages over the last ~100 of them
    "ema": ("seed=42", "callbacks=ema", "callbacks.ema.decay=0.99"),
    "aux": ("seed=42", "model.aux_weight=0.4"),
}
SINGLES = list(ROWS)


def overrides(row: str) -> list[str]:
    """A row's overrides; `a+b` joins rows a and b (the seed of the first one kept)."""
    joined: dict[str, str] = {}
    for part in row.split("+"):
        if part not in ROWS:
            raise SystemExit(f"error: unknown row {part!r}: one of {', '.join(ROWS)} or a+b")
        for override in ROWS[part]:
            key = override.split("=", 1)[0]
            if key != "seed" or key not in joined:
                joined[key] = override
    return list(joined.values())


def table(out: Path) -> str:
    """The rows done so far in `out` (the single changes in ROWS' order, then combinations),
    with each row's best val mIoU against the preset's (at the row's seed; another seed of
    the preset against seed 42's: the noise), where that row is done."""
    results = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    order = sorted(
        results, key=lambda row: (row not in ROWS, SINGLES.index(row) if row in ROWS else 0, row)
    )
    # the preset at each seed: a row whose only override is the seed
    presets = {
        r["overrides"][0]: r["realdata_val_mIoU"]
        for r in results.values()
        if len(r["overrides"]) == 1
    }
    lines = [
        "| row | overrides | best val mIoU | vs preset | val pixel acc | wall | load (1 min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in order:
        r = results[row]
        miou = r["realdata_val_mIoU"]
        seed = r["overrides"][0]
        preset = presets.get("seed=42" if len(r["overrides"]) == 1 else seed)
        versus = "" if preset is None or row == "preset" else f"{miou - preset:+.3f}"
        loads = [r["realdata_load_start"][0], *(e["load"][0] for e in r["realdata_epochs"])]
        minutes, seconds = divmod(round(r["realdata_wall_s"]), 60)
        lines.append(
            f"| {row} | `{' '.join(r['overrides'])}` | {miou:.3f} | {versus} "
            f"| {r['realdata_test_pixel_acc']:.3f} | {minutes} min {seconds:02d} s "
            f"| {min(loads):.1f}-{max(loads):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", default=SINGLES, help="rows to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"))
    parser.add_argument(
        "--voc-root", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "voc_mini"
    )
    parser.add_argument("--table", action="store_true", help="only print the table")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        import bench_realdata  # imports Lightning: only to run rows
        from bench_common import machine_info

        planned = {row: overrides(row) for row in args.rows}  # an unknown row stops before any run
        for row, extra in planned.items():
            result_file = args.out / f"{row}.json"
            if result_file.exists():
                continue
            run_dir = args.out / row
            if run_dir.exists():  # a run stopped before its result: kept aside, the row reruns
                run_dir.rename(
                    run_dir.with_name(f"{row}.unfinished-{time.strftime('%Y%m%d-%H%M%S')}")
                )
            print(f"[ablation] {row}: {' '.join(extra)}", file=sys.stderr, flush=True)
            result = bench_realdata.measure(False, args.voc_root, run_dir, extra=extra)
            if "realdata_skipped" in result:
                raise SystemExit(result["realdata_skipped"])
            result.update(overrides=extra, machine=machine_info())
            tmp = result_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=1))
            os.replace(tmp, result_file)  # a row counts as done only when whole
            print(table(args.out), flush=True)
    print(table(args.out))


if __name__ == "__main__":
    main()
