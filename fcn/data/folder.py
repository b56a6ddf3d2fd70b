"""`data=folder`: which image pairs with which mask, for any layout a config can describe.

A split is either a list file under `data.root` (`*.txt`: a stem a line, or an "image mask"
pair of paths relative to the root a line, the DeepLab / SegNet list format) or a split folder
(images in `<image_dir>/<split>/`, masks in `<mask_dir>/<split>/`, searched recursively, as
ADE20K and Cityscapes lay them out). Images and masks pair by their path below those folders
without `data.image_suffix` / `data.mask_suffix`.
"""

from __future__ import annotations

from pathlib import Path

from fcn.core.errors import ConfigError, DataError

# What `data.image_suffix: null` accepts: the formats torchvision or PIL decode.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
_SHOWN = 3  # names shown of a longer list


def split_pairs(
    root: Path,
    split: str,
    key: str,
    image_dir: str | None,
    mask_dir: str | None,
    image_suffix: str | None,
    mask_suffix: str,
) -> tuple[dict[str, tuple[Path, Path]], str]:
    """(name -> (image, mask), where the pairing came from) for one split; a split whose
    files do not pair up is one DataError naming the first few and the count."""
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist: set data.root to your dataset folder")
    if split.endswith(".txt"):
        return _listed_pairs(root, split, key, image_dir, mask_dir, image_suffix, mask_suffix)
    return _folder_pairs(root, split, key, image_dir, mask_dir, image_suffix, mask_suffix)


def _listed_pairs(root, split, key, image_dir, mask_dir, image_suffix, mask_suffix):
    path = Path(split).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        have = sorted(str(p.relative_to(root)) for p in root.glob("*.txt"))
        raise DataError(
            f"{key}={split}: list file {path} not found (lists in the root: {have or 'none'}); "
            f"name a .txt under data.root, or a split folder name"
        )
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise DataError(
            f"{key}={split}: list file {path} is empty: list a stem or an 'image mask' pair "
            "of paths a line"
        )
    widths = {len(tokens) for tokens in lines}
    if not widths <= {1, 2} or len(widths) > 1:
        bad = next(i for i, t in enumerate(lines) if len(t) != len(lines[0]) or len(t) > 2)
        raise DataError(
            f"{path} line {bad + 1}: {' '.join(lines[bad])!r}: every line must be one stem, "
            f"or every line an 'image mask' pair of paths relative to data.root"
        )
    pairs: dict[str, tuple[Path, Path]] = {}
    if widths == {2}:
        for image, mask in lines:
            # DeepLab's lists start paths with '/': they are relative to the root all the same.
            image_path, mask_path = root / image.lstrip("/"), root / mask.lstrip("/")
            name = image.lstrip("/")
            _add(pairs, name, (image_path, mask_path), path)
        return pairs, str(path)
    images, masks = _dirs(root, image_dir, mask_dir, "")
    for (stem,) in lines:
        pair = (_image_for(images, stem, image_suffix), masks / f"{stem}{mask_suffix}")
        _add(pairs, stem, pair, path)
    return pairs, str(path)


def _add(pairs: dict, name: str, pair: tuple[Path, Path], source: Path) -> None:
    if name in pairs:
        raise DataError(f"{source} lists {name!r} twice: list each pair once")
    pairs[name] = pair


def _image_for(images: Path, stem: str, suffix: str | None) -> Path:
    """The image of a listed stem: `stem + data.image_suffix`, or any image format."""
    if suffix is not None:
        return images / f"{stem}{suffix}"
    for ext in IMAGE_SUFFIXES:
        for candidate in (images / f"{stem}{ext}", images / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return images / f"{stem}.jpg"  # reported as missing by the dataset's check


def _dirs(root: Path, image_dir: str | None, mask_dir: str | None, split: str) -> tuple[Path, Path]:
    if image_dir is None or mask_dir is None:
        raise ConfigError(
            "data.image_dir and data.mask_dir must be set for stem lists and split folders "
            "(only 'image mask' pair lists do without them)"
        )
    images, masks = root / image_dir / split, root / mask_dir / split
    return images, masks


def _folder_pairs(root, split, key, image_dir, mask_dir, image_suffix, mask_suffix):
    images, masks = _dirs(root, image_dir, mask_dir, split)
    for folder, what in ((images, "data.image_dir"), (masks, "data.mask_dir")):
        if not folder.is_dir():
            raise DataError(
                f"{key}={split}: split folder {folder} not found: set {what} (and {key}) so "
                f"that <{what}>/<split>/ holds the files, or name a .txt list file"
            )
    image_files = _by_name(images, image_suffix, "data.image_suffix")
    mask_files = _by_name(masks, mask_suffix, "data.mask_suffix")
    lonely_images = sorted(set(image_files) - set(mask_files))
    lonely_masks = sorted(set(mask_files) - set(image_files))
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(
                f"{len(lonely_images)} images without a mask in {masks} "
                f"(first: {_names(image_files, lonely_images)})"
            )
        if lonely_masks:
            parts.append(
                f"{len(lonely_masks)} masks without an image in {images} "
                f"(first: {_names(mask_files, lonely_masks)})"
            )
        raise DataError(
            f"{key}={split}: {' and '.join(parts)}: add the missing files, or check "
            f"data.image_suffix={image_suffix or 'null (any image)'} and "
            f"data.mask_suffix={mask_suffix}"
        )
    pairs = {name: (image_files[name], mask_files[name]) for name in sorted(image_files)}
    return pairs, str(images)


def _names(files: dict[str, Path], names: list[str]) -> str:
    shown = ", ".join(files[n].name for n in names[:_SHOWN])
    return shown + (", ..." if len(names) > _SHOWN else "")


def _by_name(folder: Path, suffix: str | None, key: str) -> dict[str, Path]:
    """Files below `folder` ending in `suffix` (None: any image format), by their path
    relative to `folder` without it."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if suffix is not None:
            if not rel.endswith(suffix):
                continue
            name = rel[: len(rel) - len(suffix)]
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            name = rel[: len(rel) - len(path.suffix)]
        else:
            continue
        if name in found:
            raise DataError(
                f"{found[name]} and {path} have the same name: set {key} to tell them apart"
            )
        found[name] = path
    return found
