"""Our FCN-32s/ResNet-18 forward against the seed's nn.Sequential with the same weights
(`forward_*`).

The seed's model is rebuilt carrying our weights (outputs checked equal), then both forwards
are timed in alternating pairs, which one goes first swapping each time.
"""

from __future__ import annotations

import time
from typing import Any

from bench_common import BACKBONE, Settings, log, median


def seed_fcn32s(model, num_classes: int):
    """The seed's FCN-32s (d2l): ResNet-18 children[:-2], 1x1 conv, one ConvTranspose2d,
    carrying `model`'s weights."""
    import torch
    from torch import nn
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    missing, unexpected = net.load_state_dict(model.backbone.body.state_dict(), strict=False)
    if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
        raise RuntimeError(f"backbone weights do not map onto resnet18: {missing} {unexpected}")
    seed = nn.Sequential(*list(net.children())[:-2])
    seed.add_module("final_conv", nn.Conv2d(512, num_classes, kernel_size=1))
    seed.add_module(
        "transpose_conv",
        nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, padding=16, stride=32),
    )
    with torch.no_grad():
        seed.final_conv.load_state_dict(model.head.score32.state_dict())
        seed.transpose_conv.weight.copy_(model.head.final_up.weight)
        seed.transpose_conv.bias.zero_()  # ours has no bias: it starts (and stays) bilinear
    return seed


def bench_forward_vs_seed(s: Settings) -> dict[str, Any]:
    import torch

    from fcn.models import build_model

    torch.manual_seed(0)
    ours = build_model(BACKBONE, "fcn32s", 21).eval()
    seed = seed_fcn32s(ours, 21).eval()
    x = torch.randn(1, 3, *s.seed_size)
    with torch.no_grad():
        diff = float((ours(x) - seed(x)).abs().max())
    if diff > 1e-3:
        raise RuntimeError(f"our FCN-32s and the seed's differ by {diff}: weights not copied")

    def once(net) -> float:
        start = time.perf_counter()
        net(x)
        return time.perf_counter() - start

    t_ours, t_seed, ratios = [], [], []
    with torch.no_grad():
        for i in range(s.seed_warmup + s.seed_reps):
            # Alternate which goes first, so a load spike does not always hit the same one.
            pair = [(t_ours, ours), (t_seed, seed)][:: 1 if i % 2 else -1]
            got = {id(lst): once(net) for lst, net in pair}
            if i >= s.seed_warmup:
                t_ours.append(got[id(t_ours)])
                t_seed.append(got[id(t_seed)])
                ratios.append(t_seed[-1] / t_ours[-1])
    log(f"forward 32s: ours {median(t_ours) * 1e3:.1f} ms, seed {median(t_seed) * 1e3:.1f} ms")
    return {
        "forward_ratio_vs_seed": median(t_seed) / median(t_ours),
        "forward_ratio_vs_seed_pairwise": median(ratios),
        "forward_ms_ours_fcn32s": median(t_ours) * 1e3,
        "forward_ms_seed_fcn32s": median(t_seed) * 1e3,
        "forward_max_abs_diff_vs_seed": diff,
        "forward_setup": (
            f"FCN-32s/ResNet-18, 21 classes, batch 1 at {s.seed_size[0]}x{s.seed_size[1]}, "
            f"no_grad, eval mode; ratio of median times over {s.seed_reps} alternating pairs"
        ),
    }
