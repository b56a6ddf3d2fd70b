"""`python -m fcn.predict [backend=torch|onnx|exported_program] model=FILE input=FILE_OR_DIR
[output_dir=DIR] [eval.mode=slide eval.flip=true ...]` (`ckpt_path=FILE` = backend=torch).

For each image writes `<stem>.png` (palette PNG, the model's class colours, the input's size,
pixel value = class index) and `<stem>_overlay.jpg` (the prediction's colours blended over
the image). The `eval` options (whole/slide, flip, scales) apply around whichever backend
runs the network, so an exported model gives the masks fcn-eval scored. A DataLoader decodes
(in workers where cores are spare), images of the same size are batched, and several batches
are in flight at once, each taken through network, argmax and file writing by its own thread
(a "lane"). Every input is listed and its header checked before anything is written, and
existing files are never overwritten unless `overwrite=true`.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fcn.cli.entry import hydra_entry
from fcn.core.errors import ConfigError, DataError
from fcn.core.validate import whole_number
from fcn.deploy.image_files import (
    check_image,
    list_inputs,
    output_paths,
    overlay,
    read_rgb,
    save_mask,
)
from fcn.deploy.inference import predict_masks
from fcn.deploy.model_files import configured_model, load_model
from fcn.deploy.prediction_lanes import (
    batch_size_for,
    decoding_workers,
    intra_op_threads,
    pick_device,
    prediction_lanes,
)
from fcn.models.inference import InferenceOptions


class ImageFiles(Dataset):
    """(index, uint8 3 x H x W) for each path, decoded in DataLoader workers; an image that
    cannot be decoded comes back as its DataError, raised in the main process (a worker's
    exception would reach the user wrapped in its traceback)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | DataError]:
        try:
            return index, read_rgb(self.paths[index])
        except DataError as err:
            return index, err


def same_size_batches(sizes: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most `batch_size` images of one size, in order of
    each size's first appearance (a batch never mixes sizes: no padding reaches a mask)."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        by_size.setdefault(size, []).append(index)
    batches = []
    for group in by_size.values():
        batches += [group[k : k + batch_size] for k in range(0, len(group), batch_size)]
    return batches


def _as_list(items: list) -> list:
    return items


def predict(cfg: DictConfig) -> list[Path]:
    """Predict every input of `cfg.input`; returns the mask paths written."""
    started = time.perf_counter()
    options = InferenceOptions.from_config(cfg.get("eval"), key="eval")
    max_pixels = whole_number(cfg.get("max_pixels"), "max_pixels")
    device = pick_device(str(cfg.get("device", "auto")))
    num_workers = decoding_workers(cfg, device)
    alpha = float(cfg.get("overlay_alpha", 0.5))
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"overlay_alpha={alpha} must be within [0, 1]")
    model_file, backend, key = configured_model(cfg)
    batch_size = batch_size_for(cfg, device, backend)

    # Everything that can be checked is checked before the first file is written.
    inputs = list_inputs(cfg.get("input"))
    sizes = [check_image(path, max_pixels) for path in inputs]
    loaded = load_model(model_file, backend, device, key, cfg.get("allow_modules"))
    output_dir = Path(cfg.get("output_dir") or cfg.paths.output_dir).expanduser()
    if not cfg.get("overwrite", False):
        taken = [p for img in inputs for p in output_paths(img, output_dir) if p.exists()]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise ConfigError(
                f"output_dir={output_dir} already holds {taken[0].name}{more}: choose a fresh "
                "output_dir (the default is a new run directory) or pass overwrite=true"
            )
    output_dir.mkdir(parents=True, exist_ok=True)

    loader = DataLoader(
        ImageFiles(inputs),
        batch_sampler=same_size_batches(sizes, batch_size),
        num_workers=num_workers,
        collate_fn=_as_list,
        pin_memory=device.type == "cuda",
    )
    colours = loaded.info.colour_table()

    def run_lane(group: list[tuple[int, torch.Tensor]]) -> list[Path]:
        """One batch of decoded images through the network to its two files per image."""
        images = torch.stack([image for _, image in group]).to(device, non_blocking=True)
        masks = predict_masks(loaded.network, images, options)
        paths = []
        for (index, image), mask in zip(group, masks, strict=True):
            mask_path, overlay_path = output_paths(inputs[index], output_dir)
            _write(image, mask, mask_path, overlay_path, alpha, colours)
            paths.append(mask_path)
        return paths

    lanes, threads = prediction_lanes(device, loaded.backend)
    written: list[Path] = []
    pending: deque[Future] = deque()
    bar = tqdm(
        total=len(inputs),
        unit="img",
        desc="predict",
        disable=not cfg.get("progress"),
        # images/s even below 1 (tqdm's own rate turns into s/img there)
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]",
    )
    with ThreadPoolExecutor(lanes) as pool, intra_op_threads(threads), bar:
        for items in loader:
            for _, item in items:
                if isinstance(item, DataError):
                    raise item
            # A header that disagreed with the decoded size: those images one at a time.
            same = len({tuple(image.shape) for _, image in items}) == 1
            for group in [items] if same else [[item] for item in items]:
                pending.append(pool.submit(run_lane, group))
            while len(pending) > lanes:  # decoding stays at most one batch per lane ahead
                written += pending.popleft().result()  # a failed batch raises here
                bar.update(len(written) - bar.n)
        for future in pending:
            written += future.result()
            bar.update(len(written) - bar.n)
    seconds = time.perf_counter() - started
    print(
        f"predicted {len(written)} images in {seconds:.1f} s ({len(written) / seconds:.2f} "
        f"images/s end to end; backend={loaded.backend}, {describe(options)}): masks "
        f"<stem>.png and overlays <stem>_overlay.jpg in {output_dir}"
    )
    return written


def describe(options: InferenceOptions) -> str:
    """e.g. `slide 512x512/341x341, flip, scales [0.75, 1.0]`."""
    text = options.mode
    if options.mode == "slide":
        text += f" {options.window[0]}x{options.window[1]}/{options.stride[0]}x{options.stride[1]}"
    if options.flip:
        text += ", flip"
    if options.scales != (1.0,):
        text += f", scales {list(options.scales)}"
    return text


def _write(
    image: torch.Tensor,
    mask: torch.Tensor,
    mask_path: Path,
    overlay_path: Path,
    alpha: float,
    colours: list[tuple[int, int, int]],
) -> None:
    save_mask(mask.numpy(), mask_path, colours)
    Image.fromarray(overlay(image, mask, alpha, colours)).save(overlay_path, quality=90)


@hydra_entry("predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
