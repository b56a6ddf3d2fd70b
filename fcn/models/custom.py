"""Your own backbone or head by class path (`backbone._target_`, `head._target_`).

Contract (README, "Your own model"):
- a backbone class is called with no arguments; `forward(x)` takes `N x 3 x H x W` images (H, W
  multiples of 32) and returns a dict with `stride8`, `stride16`, `stride32` feature maps;
  its `.channels` is their channel counts `(c8, c16, c32)`;
- a head class is called as `Head(in_channels=(c8, c16, c32), num_classes=C)`; `forward`
  takes that dict and returns `N x C x H x W` logits at the input's size.

A checkpoint records the class paths. Rebuilding one from a checkpoint imports code, so a class
outside fcn, timm and torchvision is imported only when its top-level package is allowed
(`allow_modules=[mypkg]`): reading a file never runs code its reader did not name.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from torch import nn

from fcn.core.errors import CheckpointError, ConfigError

TRUSTED = ("fcn", "timm", "torchvision")


def check_allowed(class_path: str | None, allow_modules: Iterable[str] | None, key: str) -> None:
    """Refuse (one line) a checkpoint's class outside TRUSTED and `allow_modules`."""
    if not class_path:
        return
    package = class_path.split(".")[0]
    if package in TRUSTED or package in set(allow_modules or ()):
        return
    raise CheckpointError(
        f"{key} names the class {class_path}, outside fcn/timm/torchvision; loading it would "
        f"import and run that code: allow it with allow_modules=[{package}] (fcn-eval, "
        f"fcn-predict, fcn-export) or load_segmenter(..., allow_modules=[{package!r}])"
    )


def import_class(class_path: str, key: str) -> type[nn.Module]:
    """The class `a.b.C` names; one line when it cannot be imported."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{key}={class_path}: cannot import it ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"{key}={class_path}: not a torch.nn.Module class (module.Class)")
    return cls


def custom_backbone(class_path: str) -> nn.Module:
    body = import_class(class_path, "backbone._target_")()
    channels = getattr(body, "channels", None)
    if not (isinstance(channels, (tuple, list)) and len(channels) == 3):
        raise ConfigError(
            f"backbone._target_={class_path}: its instances need .channels = (c8, c16, c32), "
            "the channels of the stride-8/16/32 maps forward returns"
        )
    body.channels = tuple(int(c) for c in channels)
    return body


def custom_head(class_path: str, in_channels: tuple[int, int, int], num_classes: int) -> nn.Module:
    return import_class(class_path, "head._target_")(
        in_channels=in_channels, num_classes=num_classes
    )
