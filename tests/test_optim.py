"""Learning-rate schedules: `lr_factor` against the formulas each schedule names."""

from __future__ import annotations

import math

import pytest

from fcn.core.errors import ConfigError
from fcn.training.optim import lr_factor


@pytest.mark.parametrize("step", [0, 1, 37, 99, 100, 150])
def test_poly_is_one_minus_progress_to_the_power(step):
    expected = (1 - min(step / 100, 1.0)) ** 0.9
    assert lr_factor("poly", step, 100, 10) == pytest.approx(expected, abs=1e-12)


def test_cosine_falls_from_one_to_min_factor_along_half_a_cosine():
    factors = [lr_factor("cosine", s, 100, 10, min_factor=0.1) for s in (0, 25, 50, 100)]
    half_way = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25))
    assert factors == pytest.approx([1.0, half_way, 0.55, 0.1], abs=1e-12)


def test_step_multiplies_by_gamma_at_each_milestone_epoch():
    # 10 steps per epoch, milestones at epochs 2 and 4
    got = [lr_factor("step", s, 100, 10, milestones=(2, 4), gamma=0.5) for s in (0, 19, 20, 39, 40)]
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_constant_stays_one():
    assert {lr_factor("constant", s, 100, 10) for s in range(0, 120, 7)} == {1.0}


@pytest.mark.parametrize("name", ["poly", "cosine", "step", "constant"])
def test_warmup_ramps_linearly_into_any_schedule(name):
    plain = [lr_factor(name, s, 100, 10, milestones=(1,)) for s in range(8)]
    warm = [lr_factor(name, s, 100, 10, warmup_steps=4, milestones=(1,)) for s in range(8)]
    ramp = [(s + 1) / 4 for s in range(4)] + [1.0] * 4
    assert warm == pytest.approx([p * r for p, r in zip(plain, ramp, strict=True)], abs=1e-12)


def test_unknown_schedule_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"scheduler.name='linear' is unknown; choose one of"):
        lr_factor("linear", 0, 10, 1)
