"""`backbone=timm backbone.model_name=NAME`: any timm model with `features_only`, tapped at the
stages whose reductions are 8, 16 and 32 (the last stage of each)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from torch import Tensor, nn

from fcn.core.errors import CheckpointError, ConfigError
from fcn.core.torch_files import load_weights_only, state_dict_mismatch

STRIDES = (8, 16, 32)


def _timm():
    import timm  # imported on use: torchvision backbones need none of its start-up cost

    return timm


def _stage_indices(model_name: str) -> list[int]:
    """The feature indices of the last stage at each of STRIDES; one line when one is missing."""
    timm = _timm()
    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:5]
        hint = f" (close: {', '.join(close)})" if close else ""
        raise ConfigError(
            f"backbone.model_name={model_name!r} is not a timm model{hint}; "
            "`timm.list_models()` lists them"
        )
    try:
        probe = timm.create_model(model_name, pretrained=False, features_only=True)
    except (RuntimeError, AssertionError, TypeError, ValueError) as err:
        raise ConfigError(
            f"backbone.model_name={model_name}: timm cannot build it with features_only "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); choose a model "
            "with feature maps at strides 8, 16 and 32"
        ) from None
    reductions = list(probe.feature_info.reduction())
    missing = [s for s in STRIDES if s not in reductions]
    if missing:
        raise ConfigError(
            f"backbone.model_name={model_name} has feature maps at strides "
            f"{sorted(set(reductions))}, not at {missing}: FCN heads need strides 8, 16 and 32"
        )
    return [max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES]


class TimmBackbone(nn.Module):
    """A timm `features_only` model returning `stride8`, `stride16`, `stride32` maps."""

    def __init__(
        self,
        model_name: str,
        pretrained: bool = False,
        weights_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        timm = _timm()
        indices = _stage_indices(model_name)
        kwargs = {"features_only": True, "out_indices": indices}
        if weights_path is not None:
            self.body = _with_weights_file(model_name, os.fspath(weights_path), kwargs)
        elif pretrained:
            self.body = _with_timm_weights(model_name, kwargs)
        else:
            self.body = timm.create_model(model_name, pretrained=False, **kwargs)
        self.model_name = model_name
        self.channels = tuple(self.body.feature_info.channels())

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        s8, s16, s32 = self.body(x)
        return {"stride8": s8, "stride16": s16, "stride32": s32}


def _with_timm_weights(model_name: str, kwargs: dict) -> nn.Module:
    """timm's own pretrained weights (Hugging Face hub cache; online for the first use)."""
    try:
        return _timm().create_model(model_name, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:
        # hub errors (offline, unknown repo) are OSErrors/RuntimeErrors; no weights: RuntimeError
        raise CheckpointError(
            f"no cached timm weights for backbone.model_name={model_name} and the download "
            f"failed ({type(err).__name__}): pass backbone.weights_path=/path/to/{model_name}"
            ".safetensors (a timm state dict) or run once online"
        ) from None


def _read_state(path: str) -> Mapping[str, Tensor]:
    source = f"backbone.weights_path={path}"
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (OSError, SafetensorError) as err:
            raise CheckpointError(f"{source}: not a readable .safetensors file ({err})") from None
    state = load_weights_only(path, "backbone.weights_path", "a timm state dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(state).__name__}, not a state dict; expected a timm state dict"
        )
    return state


def _with_weights_file(model_name: str, path: str, kwargs: dict) -> nn.Module:
    """Load a timm state dict: the classification model's (its classifier may be missing) or a
    features-only model's; any other difference is one line."""
    timm = _timm()
    state = _read_state(path)
    body = timm.create_model(model_name, pretrained=False, **kwargs)
    if not state_dict_mismatch(body.state_dict(), state, ()).missing and all(
        k in body.state_dict() for k in state
    ):
        body.load_state_dict(state)  # a features-only dict
        return body
    full = timm.create_model(model_name, pretrained=False)
    classifier = full.pretrained_cfg.get("classifier") or "\0"
    prefixes = tuple(c + "." for c in ([classifier] if isinstance(classifier, str) else classifier))
    mismatch = state_dict_mismatch(full.state_dict(), state, may_lack=prefixes)
    if mismatch:
        raise CheckpointError(
            f"backbone.weights_path={path} does not match timm model {model_name}: expected its "
            f"state dict, whole, without {prefixes[0]}* or features-only ({mismatch.summary()})"
        )
    full.load_state_dict(state, strict=False)
    # timm wraps the loaded classification model into its features-only net itself.
    # Its log line about the classifier keys a features-only net drops is noise here.
    overlay = {"state_dict": full.state_dict()}
    builder_log = logging.getLogger("timm.models._builder")
    level = builder_log.level
    builder_log.setLevel(logging.ERROR)
    try:
        return timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
        )
    finally:
        builder_log.setLevel(level)
