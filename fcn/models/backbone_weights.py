"""A backbone's ImageNet weights: a local torchvision state dict (`backbone.weights_path`, whole
or features-only, read with `weights_only=True`) or torchvision's weights through the torch hub
cache (`backbone.pretrained=true`). Any mismatch is one line naming the source."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torchvision import models

from fcn.core.errors import CheckpointError
from fcn.core.torch_files import load_weights_only, state_dict_mismatch


def load_weights_file(net: nn.Module, path: str, name: str, classifier: str) -> None:
    """Load `backbone.weights_path` into the full torchvision model `net`."""
    expected = f"a torchvision {name} state dict (.pth)"
    state = load_weights_only(path, "backbone.weights_path", expected)
    _load_into(net, state, name, classifier, f"backbone.weights_path={path}")


def load_imagenet_weights(
    net: nn.Module, weights: models.WeightsEnum, name: str, classifier: str
) -> None:
    """Load torchvision's ImageNet `weights` (downloaded into the hub cache when online)."""
    _load_into(net, _download_state_dict(name, weights), name, classifier, f"downloaded {weights}")


def _load_into(
    net: nn.Module, state: Mapping[str, Tensor], name: str, classifier: str, source: str
) -> None:
    """Load `state` into the full torchvision model; refuse any mismatch in one line.

    The classifier's keys (`<classifier>.*`) may be missing, and nothing else: a features-only
    dict. They are unused by the FCN, except for vgg16, whose fc6/fc7 then keep torchvision's
    fresh initialisation.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(state).__name__}, not a state dict; expected a "
            f"torchvision {name} state dict"
        )
    mismatch = state_dict_mismatch(net.state_dict(), state, may_lack=(f"{classifier}.",))
    if mismatch:
        raise CheckpointError(
            f"{source} does not match backbone {name}: expected a torchvision {name} state dict, "
            f"full or without its {classifier}.* keys ({mismatch.summary()})"
        )
    net.load_state_dict(state, strict=False)


def _download_state_dict(name: str, weights: models.WeightsEnum) -> Mapping[str, Tensor]:
    """Fetch ImageNet weights through the torch hub cache; offline -> how to pass a file."""
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        # URLError/HTTPError are OSErrors; a corrupt cached file raises RuntimeError/Unpickling.
        filename = os.path.basename(weights.url)
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        raise CheckpointError(
            f"no cached ImageNet weights for backbone.name={name} and the download failed "
            f"({type(err).__name__}): pass backbone.weights_path=/path/to/{filename} "
            f"(a torchvision {name} state dict) or copy that file into {cache}"
        ) from None
