"""slim.visualize: PNG, plotted numbers as JSON, VisualDL scalars."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from paddleprune.errors import InvalidParameterError
from paddleprune.prune.sensitivity_files import save_sensitivities
from paddleprune.slim import visualize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRID = [round(0.05 * i, 2) for i in range(1, 20)]


def _sens(n_layers):
    ratios = [round(0.1 * i, 1) for i in range(1, 10)]
    return {f"features.{i}.conv.weight": {r: (0.2 + 0.1 * i) * r ** 2 - 0.005 for r in ratios}
            for i in range(n_layers)}


def _cost(ratios):  # monotone in every ratio
    mean = float(np.mean(list(ratios.values())))
    return {"flops": 1 - (1 - mean) ** 2, "params": mean}


def _check_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.path.getsize(path) > 10_000


def test_writes_png_and_monotone_json(tmp_path):
    src = tmp_path / "mobilenetv2.json"
    save_sensitivities(src, _sens(4), {"model": "MobileNetV2", "metric": "acc1"})
    png = visualize(src, tmp_path / "out", cost_fn=_cost)
    assert png == str(tmp_path / "out" / "sensitivities.png")
    _check_png(png)
    xy = json.loads((tmp_path / "out" / "sensitivities_xy.json").read_text())
    assert xy["model"] == "MobileNetV2" and xy["eval_metric_loss"] == GRID
    for key in ("pruned_flops", "pruned_params", "mean_ratio"):
        values = xy[key]
        assert len(values) == 19 and all(0.0 <= v <= 1.0 for v in values)
        assert all(b >= a for a, b in zip(values, values[1:])), key
    assert xy["pruned_flops"][-1] > xy["pruned_flops"][0]
    assert xy["layers"]["features.0.conv.weight"]["ratio"] == [round(0.1 * i, 1) for i in range(1, 10)]
    assert sorted(os.listdir(tmp_path / "out")) == ["sensitivities.png", "sensitivities_xy.json"]


def test_many_layers_without_cost_fn(tmp_path):
    png = visualize(_sens(20), tmp_path, model_name="ResNet50")
    _check_png(png)
    xy = json.loads((tmp_path / "sensitivities_xy.json").read_text())
    assert "pruned_flops" not in xy and len(xy["layers"]) == 20
    assert all(b >= a for a, b in zip(xy["mean_ratio"], xy["mean_ratio"][1:]))


def test_visualdl_scalars_read_back(tmp_path):
    from visualdl import LogReader

    logdir = tmp_path / "vdl_log"
    visualize(_sens(2), tmp_path / "out", cost_fn=_cost, vdl_logdir=logdir)
    files = [f for f in os.listdir(logdir) if f.startswith("vdlrecords")]
    assert len(files) == 1 and os.path.getsize(logdir / files[0]) > 0
    reader = LogReader(file_path=str(logdir / files[0]))
    tags = set(reader.get_tags()["scalar"])
    assert {"sensitivity/features.0.conv.weight", "sensitivity/features.1.conv.weight",
            "pruned/flops", "pruned/params"} <= tags
    layer = reader.get_data("scalar", "sensitivity/features.1.conv.weight")
    assert [p.id for p in layer] == list(range(10, 100, 10))
    assert layer[2].value == pytest.approx(0.3 * 0.09 - 0.005, abs=1e-6)
    flops = reader.get_data("scalar", "pruned/flops")
    assert [p.id for p in flops] == list(range(5, 100, 5))


def test_errors(tmp_path):
    with pytest.raises(InvalidParameterError, match="visualize: no layers to plot"):
        visualize({}, tmp_path)
    with pytest.raises(InvalidParameterError, match=r"'cost_fn' must return \{'flops': fraction"):
        visualize(_sens(2), tmp_path, cost_fn=lambda ratios: {"latency": 1.0})
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InvalidParameterError, match="'save_dir' must be a folder"):
        visualize(_sens(2), tmp_path / "afile")


def test_import_has_no_plotting_side_effects():
    code = ("import sys, paddleprune.slim; "
            "print(sorted(m for m in ('matplotlib', 'matplotlib.pyplot', 'visualdl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
