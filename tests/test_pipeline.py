"""The three-stage pipeline end to end, in its quick form, on the embedded data."""
import json
import os

import pytest

from paddleprune.cli import main
from paddleprune.errors import InvalidParameterError
from paddleprune.pipeline import run_pipeline


@pytest.mark.slow
def test_quick_demo_end_to_end_and_rerun_skips(tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert main(["demo", "--quick", "--save-dir", out]) == 0
    printed = capsys.readouterr().out
    assert "| FLOPs |" in printed and "| acc1 (%) |" in printed
    report = json.load(open(os.path.join(out, "report.json")))
    o, p = report["original"], report["pruned"]
    assert p["flops"] < o["flops"] and p["params"] < o["params"] and p["size_mb"] < o["size_mb"]
    assert 0 < o["metric"] <= 1 and 0 < p["metric"] <= 1
    assert o["latency_ms_cpu"] > 0 and p["latency_ms_cpu"] > 0
    for stage in ("stage1_train", "stage2_sensitivities", "stage3_pruned"):
        assert os.path.isfile(os.path.join(out, stage, ".done"))
    assert os.path.isfile(os.path.join(out, "stage2_sensitivities", "sensitivities.png"))
    assert os.path.isfile(os.path.join(out, "report.md"))
    # a re-run skips the finished stages and gives the same model figures
    again = run_pipeline(save_dir=out, quick=True, latency=False)
    assert again["pruned"]["flops"] == p["flops"] and again["pruned"]["metric"] == p["metric"]
    assert again["seconds"] < report["seconds"]


def test_bad_pipeline_arguments(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"unknown task 'detection3d'; available: \['classification'\]"):
        run_pipeline(task="detection3d", save_dir=str(tmp_path))
    with pytest.raises(InvalidParameterError, match=r"'eval_metric_loss' must be a number in \(0, 1\); got 1.5"):
        run_pipeline(eval_metric_loss=1.5, save_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train_list.txt does not exist"):
        run_pipeline(data_dir=str(tmp_path), save_dir=str(tmp_path / "o"))
