"""`fcn-data` (`python -m fcn.data.prepare`): VOC 2012 and SBD, from archives to a training tree.

    fcn-data voc   [--root DATA] [--url URL ...] [--archive FILE] [--checksum md5:HEX|sha256:HEX]
    fcn-data sbd   [--root DATA] [--url URL ...] [--archive FILE] [--checksum ...]
    fcn-data aug   [--root DATA] [--voc-url ... --sbd-archive ... --workers N]
    fcn-data check [--root DATA/VOCdevkit/VOC2012] [--split NAME ...]
    fcn-data check data=folder data.root=... data.classes=[...]   (any data config, as fcn-train)
    fcn-data stats data=folder data.root=... data.classes=[...]

DATA defaults to $FCN_DATA, else ./data: where `data=voc` and `data=voc_aug` look by default.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from fcn.core.config_tree import config_dir
from fcn.core.errors import exit_on_user_error
from fcn.data.archives import SBD, VOC2012, ArchiveSpec, Checksum, ensure
from fcn.data.check import check_tree, format_reports
from fcn.data.sbd import AUG_SPLIT, build_aug

DATA_ENV = "FCN_DATA"


def default_data_root() -> Path:
    """DATA as the configs see it: `${oc.env:FCN_DATA,data}` (relative to the working dir)."""
    return Path(os.environ.get(DATA_ENV, "data")).expanduser()


def _count(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


def _add_source(parser: argparse.ArgumentParser, spec: ArchiveSpec, prefix: str = "") -> None:
    flag = f"--{prefix}-" if prefix else "--"
    parser.add_argument(
        f"{flag}url",
        action="append",
        metavar="URL",
        help=f"a mirror of {spec.filename}, tried in the order given (repeatable); "
        f"default: {', '.join(spec.urls)}",
    )
    parser.add_argument(
        f"{flag}archive", type=Path, metavar="FILE", help=f"use this copy of {spec.filename}"
    )
    parser.add_argument(
        f"{flag}checksum",
        type=Checksum.parse,
        metavar="ALGO:HEX",
        help=f"md5:HEX or sha256:HEX of an archive other than the official one "
        f"(official: md5:{spec.md5})",
    )


def _source(args: argparse.Namespace, prefix: str = "") -> dict:
    key = f"{prefix}_" if prefix else ""
    return {
        "urls": getattr(args, f"{key}url"),
        "archive": getattr(args, f"{key}archive"),
        "checksum": getattr(args, f"{key}checksum"),
        "retries": args.retries,
    }


def _train_hint(group: str, voc_root: Path, data_root: Path) -> str:
    default = data_root.resolve() == default_data_root().resolve()
    where = "" if default else f" data.root={voc_root.resolve()}"
    return f"train on it: python -m fcn.train data={group}{where}"


def _voc(args: argparse.Namespace) -> None:
    voc_root = ensure(VOC2012, args.root, **_source(args))
    print(f"VOC 2012 is in {voc_root}; {_train_hint('voc', voc_root, args.root)}")


def _sbd(args: argparse.Namespace) -> None:
    sbd_root = ensure(SBD, args.root, **_source(args))
    print(f"SBD is in {sbd_root}; next: fcn-data aug --root {args.root}")


def _aug(args: argparse.Namespace) -> None:
    voc_root = ensure(VOC2012, args.root, **_source(args, "voc"))
    sbd_root = ensure(SBD, args.root, **_source(args, "sbd"))
    s = build_aug(voc_root, sbd_root, args.workers)
    print(
        f"{AUG_SPLIT}.txt: {s.num_ids:,} ids = SBD train {s.sbd_train:,} + SBD val "
        f"{s.sbd_val:,} + VOC train {s.voc_train:,}, merged, without the {s.dropped_val:,} "
        f"that are VOC val ids; SegmentationClassAug/: {s.labels:,} labels "
        f"({s.written:,} files written by this run, the rest were already done)"
    )
    if not args.no_check:
        print(format_reports(voc_root, check_tree(voc_root, [AUG_SPLIT, "val"])))
    print(_train_hint("voc_aug", voc_root, args.root))


def _check(args: argparse.Namespace) -> None:
    root = args.root if args.root is not None else default_data_root() / VOC2012.member
    reports = check_tree(root, args.split, args.label_dir, args.num_classes)
    print(format_reports(root, reports, args.num_classes))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcn-data",
        description="Download, verify and extract PASCAL VOC 2012 and SBD; build the "
        "SBD-augmented training set; check a VOC tree.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    root_help = f"DATA folder (default: ${DATA_ENV}, else ./data)"
    retries_help = "attempts in a row without progress before a URL is given up (default 3)"

    for spec, run in ((VOC2012, _voc), (SBD, _sbd)):
        sub = commands.add_parser(
            spec.name, help=f"{spec.title}: {spec.filename} into DATA/{spec.member}"
        )
        sub.add_argument("--root", type=Path, default=default_data_root(), help=root_help)
        _add_source(sub, spec)
        sub.add_argument("--retries", type=_count(0), default=3, help=retries_help)
        sub.set_defaults(run=run)

    aug = commands.add_parser(
        "aug", help="VOC + SBD: SegmentationClassAug/ and train_aug.txt (downloads what is missing)"
    )
    aug.add_argument("--root", type=Path, default=default_data_root(), help=root_help)
    _add_source(aug, VOC2012, "voc")
    _add_source(aug, SBD, "sbd")
    aug.add_argument("--retries", type=_count(0), default=3, help=retries_help)
    aug.add_argument(
        "--workers", type=_count(1), default=os.cpu_count() or 1, help="conversion processes"
    )
    aug.add_argument("--no-check", action="store_true", help="skip checking the result")
    aug.set_defaults(run=_aug)

    check = commands.add_parser(
        "check",
        help="validate a VOC tree as the loaders will; or any data config: fcn-data check "
        "data=folder data.root=... (the trainer's overrides)",
    )
    check.add_argument("--root", type=Path, help=f"the VOC tree (default: DATA/{VOC2012.member})")
    check.add_argument(
        "--split",
        action="append",
        help="split to check (repeatable; default: train, val and train_aug if present)",
    )
    check.add_argument(
        "--label-dir",
        help="label folder (default: SegmentationClassAug for train_aug, else SegmentationClass)",
    )
    check.add_argument("--num-classes", type=_count(1), default=21)
    check.set_defaults(run=_check)
    commands.add_parser(
        "stats",
        help="per-class pixel and image frequencies per split of any data config: fcn-data "
        "stats data=folder data.root=... (the trainer's overrides; cached beside the data)",
    )
    return parser


def _hydra_command(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """`check` / `stats` followed by Hydra overrides (`data=folder data.root=...`): the
    command and its overrides; None for the argparse commands."""
    if not argv or argv[0] not in ("check", "stats"):
        return None
    rest = list(argv[1:])
    if argv[0] == "stats" and not any(a in ("-h", "--help") for a in rest):
        return "stats", rest
    if rest and all("=" in a and not a.startswith("-") for a in rest):
        return "check", rest
    return None


def data_config(overrides: Sequence[str]) -> DictConfig:
    """The `data` node fcn-train would build from these overrides."""
    from hydra import compose, initialize_config_dir

    from fcn.cli.entry import prepare_process

    prepare_process()  # the data configs use fcn's resolvers
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", list(overrides)).data


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    hydra_command = _hydra_command(argv)
    if hydra_command is not None:
        from fcn.data import config_report

        command, overrides = hydra_command
        with exit_on_user_error():
            data = data_config(overrides)
            if command == "stats":
                config_report.stats(data)
            elif config_report.check(data):
                sys.exit(2)
        return
    args = build_parser().parse_args(argv)
    try:
        with exit_on_user_error():
            args.run(args)
    except KeyboardInterrupt:
        # Downloads keep their .part file and conversion its finished files: nothing is lost.
        print("interrupted: run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
