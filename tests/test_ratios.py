"""Per-layer ratios from sensitivities, channel alignment and the threshold search."""
import logging

import numpy as np
import pytest

from paddleprune.errors import InvalidParameterError
from paddleprune.prune.ratios import get_ratios_by_loss, round_ratios, round_to, search_loss_threshold

CURVE = {"a.weight": {0.1: 0.01, 0.2: 0.02, 0.3: 0.05, 0.4: 0.10}}


def test_interpolates_towards_the_next_larger_ratio():
    # largest ratio with loss <= 0.03 is 0.2 (0.02); next is 0.3 (0.05): 0.2 + 0.01 * 0.1 / 0.03
    assert get_ratios_by_loss(CURVE, 0.03) == {"a.weight": pytest.approx(0.2 + 0.1 / 3)}
    assert get_ratios_by_loss(CURVE, 0.075)["a.weight"] == pytest.approx(0.35)


def test_exact_hit_and_beyond_the_largest_ratio():
    assert get_ratios_by_loss(CURVE, 0.10) == {"a.weight": 0.4}
    assert get_ratios_by_loss(CURVE, 5.0) == {"a.weight": 0.4}
    assert get_ratios_by_loss(CURVE, 0.02) == {"a.weight": 0.2}  # exact hit inside: no interpolation step


def test_layer_over_threshold_everywhere_gets_zero():
    sens = dict(CURVE, **{"b.weight": {0.1: 0.2, 0.2: 0.3}, "c.weight": {}})
    assert get_ratios_by_loss(sens, 0.005) == {"a.weight": 0.0, "b.weight": 0.0, "c.weight": 0.0}


def test_float_noise_keys_are_normalised():
    noisy = {"a.weight": {np.float64(r): 0.1 * i for i, r in enumerate(np.arange(0.1, 1, 0.1))}}
    assert list(noisy["a.weight"])[2] != 0.3
    assert get_ratios_by_loss(noisy, 0.2) == {"a.weight": 0.3}
    assert get_ratios_by_loss(noisy, 0.65)["a.weight"] == pytest.approx(0.75)


def test_negative_losses():
    sens = {"b.weight": {0.1: -0.02, 0.2: -0.01, 0.3: 0.04}}
    assert get_ratios_by_loss(sens, 0.0)["b.weight"] == pytest.approx(0.2 + 0.01 * 0.1 / 0.05)
    assert get_ratios_by_loss(sens, -0.015)["b.weight"] == pytest.approx(0.15)
    assert get_ratios_by_loss(sens, -0.05) == {"b.weight": 0.0}


def test_unsorted_points_give_the_same_result():
    shuffled = {"a.weight": dict(reversed(list(CURVE["a.weight"].items())))}
    assert get_ratios_by_loss(shuffled, 0.03) == get_ratios_by_loss(CURVE, 0.03)


def test_non_monotone_curve_uses_largest_qualifying_ratio_and_stays_monotone_in_threshold():
    bumpy = {"n.weight": {0.1: 0.0, 0.2: 0.5, 0.3: 0.01, 0.4: 0.6}}
    # 0.2 exceeds 0.02 but 0.3 does not: the PaddleX rule picks the 0.3 segment
    assert get_ratios_by_loss(bumpy, 0.02)["n.weight"] == pytest.approx(0.3 + 0.01 * 0.1 / 0.59)
    values = [get_ratios_by_loss(bumpy, t)["n.weight"] for t in np.linspace(-0.1, 0.7, 161)]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_invalid_arguments():
    with pytest.raises(InvalidParameterError, match=r"get_ratios_by_loss: 'loss' must be a finite number; got nan"):
        get_ratios_by_loss(CURVE, float("nan"))
    with pytest.raises(InvalidParameterError,
                       match=r"get_ratios_by_loss: ratio key '1.5' for 'conv1.weight' must be in \(0, 1\)"):
        get_ratios_by_loss({"conv1.weight": {1.5: 0.1}}, 0.05)


def _kept(channels, ratio):
    return channels - round(channels * ratio)


def test_round_to_matches_paddleslim_doc_example():
    assert _kept(32, round_to(0.2, 32, 1)) == 26
    assert round_to(0.2, 32, 8) == 0.25 and _kept(32, 0.25) == 24
    assert round_to(0.99, 32, 8) == 0.75  # 0 kept becomes one alignment unit
    assert round_to(0.0, 30, 8) == 0.0  # 32 > 30 kept: clamped at 0
    assert round_to(0.5, 20, 8) == 0.6  # 10/8 = 1.25 -> 1 unit = 8 kept


def test_round_to_rejects_bad_values():
    with pytest.raises(InvalidParameterError, match=r"round_to: 'align' must be a positive integer; got 0"):
        round_to(0.2, 32, 0)
    with pytest.raises(InvalidParameterError, match=r"round_to: 'ratio' must be a number in \[0, 1\); got 1.0"):
        round_to(1.0, 32, 8)
    with pytest.raises(InvalidParameterError, match=r"round_to: 'channels' must be a positive integer; got 3.5"):
        round_to(0.2, 3.5, 8)


def test_round_ratios():
    ratios = {"a.weight": 0.2, "b.weight": 0.5}
    assert round_ratios(ratios, {"a.weight": 32, "b.weight": 20}, 8) == {"a.weight": 0.25, "b.weight": 0.6}
    assert round_ratios(ratios, {}, None) == ratios
    with pytest.raises(InvalidParameterError, match=r"round_ratios: no channel count for \['b.weight'\]"):
        round_ratios(ratios, {"a.weight": 32}, 8)


def _synthetic(n_layers=6):
    rng = np.random.default_rng(0)
    ratios = np.round(np.arange(0.1, 1, 0.1), 1)
    scales = rng.uniform(0.2, 2.0, size=n_layers)  # one per layer: monotone loss curves
    return {f"layer{i}.weight": {float(r): float(scales[i] * r ** 2) for r in ratios} for i in range(n_layers)}


def _mean_ratio(ratios):
    return float(np.mean(list(ratios.values())))


def test_search_reaches_target_first():
    sens, calls = _synthetic(), []

    def cost(ratios):
        calls.append(1)
        return _mean_ratio(ratios)
    res = search_loss_threshold(sens, 0.5, cost, tol=1e-3)
    threshold, ratios, reached = res
    assert reached and 0.5 <= _mean_ratio(ratios) <= 0.5 + 1e-3
    assert ratios == get_ratios_by_loss(sens, threshold)
    assert _mean_ratio(get_ratios_by_loss(sens, threshold - 0.01)) < 0.5  # a clearly smaller threshold misses
    assert len(calls) <= 51


def test_search_reports_unreachable_target(caplog):
    sens = _synthetic()
    with caplog.at_level(logging.WARNING, logger="paddleprune.prune.ratios"):
        threshold, ratios, reached = search_loss_threshold(sens, 0.95, _mean_ratio)
    assert not reached
    assert threshold == max(l for pts in sens.values() for l in pts.values())
    assert set(ratios.values()) == {0.9}
    assert "target 0.9500 cannot be reached" in caplog.text


def test_search_on_a_step_cost_terminates_and_aligns():
    sens, channels, calls = _synthetic(), {}, []
    channels = {name: 16 for name in sens}

    def removed_channels(ratios):  # whole channels only: a step function of the threshold
        calls.append(1)
        return sum(round(16 * r) for r in ratios.values()) / (16 * len(ratios))
    res = search_loss_threshold(sens, 0.4, removed_channels, tol=0.0, max_iter=200,
                                postprocess=lambda r: round_ratios(r, channels, 4))
    assert res.reached and removed_channels(res.ratios) >= 0.4
    assert all((16 - round(16 * r)) % 4 == 0 for r in res.ratios.values())
    assert len(calls) < 60


def test_search_rejects_bad_input():
    with pytest.raises(InvalidParameterError, match=r"'target' must be a number in \(0, 1\]; got 1.5"):
        search_loss_threshold(_synthetic(), 1.5, _mean_ratio)
    with pytest.raises(InvalidParameterError, match="'sensitivities' holds no measured points"):
        search_loss_threshold({"a.weight": {}}, 0.5, _mean_ratio)
    with pytest.raises(InvalidParameterError, match="'cost_fn' must return the fraction removed as a finite number"):
        search_loss_threshold(_synthetic(), 0.5, lambda ratios: None)
