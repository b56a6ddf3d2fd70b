"""What a deployed model needs besides its weights: classes, colours, input normalisation, origin.

The same string-to-string metadata travels in every export (ONNX `metadata_props`, the `.pt2`
extra file `fcn.json`, TorchScript's `_extra_files`), so any backend can be told apart and
its masks drawn the way training drew them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fcn.core.classes import colour_table
from fcn.core.errors import CheckpointError
from fcn.core.normalization import IMAGENET_MEAN, IMAGENET_STD

# The extra file of a .pt2 / TorchScript archive that holds the metadata.
METADATA_FILE = "fcn.json"
INPUT_DOC = "images: N x 3 x H x W float32, RGB / 255, normalised by mean and std (any H, W >= 32)"
OUTPUT_DOC = "logits: N x num_classes x H x W float32"


@dataclass(frozen=True)
class ModelInfo:
    """The facts about one trained FCN that an export carries."""

    backbone: str
    head: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB colour of each class index
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    config_sha256: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_module(cls, module: Any, hyper_parameters: Mapping[str, Any]) -> ModelInfo:
        """From a SegmentationModule and its checkpoint's hyper_parameters (hashed as given)."""
        names = tuple(str(n) for n in module.class_names)
        hp = module.hparams
        return cls(
            # a timm backbone is named with its model (`timm/convnext_atto`), your own by class
            backbone=hp.get("backbone_target")
            or "/".join(str(p) for p in (hp["backbone"], hp.get("model_name")) if p),
            head=str(hp.get("head_target") or hp["head"]),
            class_names=names,
            palette=tuple(tuple(int(c) for c in rgb) for rgb in module.palette),
            config_sha256=hyper_parameters_sha256(hyper_parameters),
        )

    def to_metadata(self, fmt: str) -> dict[str, str]:
        """Flat string metadata (ONNX metadata_props allow nothing else)."""
        return {
            "format": fmt,
            "backbone": self.backbone,
            "head": self.head,
            "num_classes": str(self.num_classes),
            "class_names": json.dumps(list(self.class_names)),
            "palette": json.dumps([list(rgb) for rgb in self.palette]),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "config_sha256": self.config_sha256,
            "input": INPUT_DOC,
            "output": OUTPUT_DOC,
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str) -> ModelInfo:
        """Parse `to_metadata`'s dict; CheckpointError naming `source` when it is not ours."""
        needed = ("backbone", "head", "class_names", "palette", "mean", "std")
        missing = [k for k in needed if k not in meta]
        if missing:
            raise CheckpointError(
                f"model={source}: carries no fcn metadata ({', '.join(missing)} missing); "
                "pass a file written by fcn-export"
            )
        try:
            names = tuple(str(n) for n in json.loads(meta["class_names"]))
            palette = tuple(tuple(int(c) for c in rgb) for rgb in json.loads(meta["palette"]))
            mean = tuple(float(v) for v in json.loads(meta["mean"]))
            std = tuple(float(v) for v in json.loads(meta["std"]))
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"model={source}: unreadable fcn metadata ({err})") from None
        if len(palette) != len(names) or any(len(rgb) != 3 for rgb in palette):
            raise CheckpointError(f"model={source}: fcn metadata palette does not fit its classes")
        return cls(
            backbone=meta["backbone"],
            head=meta["head"],
            class_names=names,
            palette=palette,  # type: ignore[arg-type]
            mean=mean,
            std=std,
            config_sha256=meta.get("config_sha256", ""),
        )

    def colour_table(self) -> list[tuple[int, int, int]]:
        """256 RGB entries: the classes' colours, then the default colormap (void 255 in VOC's
        cream colour)."""
        return colour_table(self.palette)


def hyper_parameters_sha256(hyper_parameters: Mapping[str, Any]) -> str:
    """sha256 of the training hyper-parameters as sorted-key JSON: names the exact config."""
    text = json.dumps(dict(hyper_parameters), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
