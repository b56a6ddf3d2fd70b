"""untied_differences: class disagreements between two runs count only where the logits did
not tie."""

from __future__ import annotations

import torch

from fcn.deploy.tie_check import untied_differences


def test_only_disagreements_away_from_ties_count():
    reference = torch.zeros(1, 3, 2, 2)
    reference[0, 0] = 1.0  # class 0 wins everywhere ...
    reference[0, 1, 0, 0] = 1.0 - 1e-5  # ... pixel (0, 0) nearly ties with class 1
    other = reference.clone()
    assert untied_differences(reference, other) == 0
    other[0, 1, 0, 0] = 1.0 + 1e-5  # the tie flips: allowed
    assert untied_differences(reference, other) == 0
    other[0, 2, 1, 1] = 5.0  # a clear winner changes: counted
    assert untied_differences(reference, other) == 1
    assert untied_differences(reference, other, tie=10.0) == 0
