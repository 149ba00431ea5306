"""The PaddleX-style tutorial in tutorials/compress/classification/, run as a user would.

The three scripts run as subprocesses in a temporary folder with their default paths
(so the paths one stage writes are the ones the next stage reads), on small subsets
of the embedded demo data and for one epoch each.
"""
import os
import subprocess
import sys

import pytest
import yaml

TUTORIAL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tutorials", "compress", "classification")
SUBSETS = ["--train_subset", "480", "--eval_subset", "96"]


def run(script, *args, cwd, timeout=300):
    proc = subprocess.run([sys.executable, os.path.join(TUTORIAL, script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    return proc


def check(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n" \
                                 f"--- stderr\n{proc.stderr[-5000:]}"
    return proc.stdout


def test_scripts_have_help(tmp_path):
    for script in ("train.py", "cal_sensitivities_file.py", "mobilenetv2.py"):
        out = check(run(script, "--help", cwd=tmp_path))
        assert "--help" in out
    assert "--sensitivities_file" in out and "DEFAULT" in out and "--eval_metric_loss" in out


@pytest.mark.slow
def test_tutorial_three_stages(tmp_path):
    cwd = str(tmp_path)
    # stage 1: train
    out = check(run("train.py", "--num_epochs", "1", *SUBSETS, cwd=cwd))
    assert "stage 1 done" in out
    best = tmp_path / "output" / "mobilenetv2" / "best_model"
    assert (best / "model.yml").is_file() and (best / "model.pdparams").is_file()
    assert (tmp_path / "output" / "mobilenetv2" / "vdl_log").is_dir()
    assert yaml.safe_load((best / "model.yml").read_text())["status"] == "Normal"

    # stage 2: sensitivities and their plot (default --model_dir and --save_file)
    out = check(run("cal_sensitivities_file.py", "--eval_subset", "64", "--ratios", "0.3", "0.6", cwd=cwd))
    assert "stage 2 done" in out
    sen_file = tmp_path / "mobilenetv2.sensi.json"
    assert sen_file.is_file() and sen_file.stat().st_size > 0
    assert (tmp_path / "sensitivities.png").is_file()

    # stage 3, method 1: prune with our own file (default --model_dir and --sensitivities_file)
    out = check(run("mobilenetv2.py", "--num_epochs", "1", "--eval_metric_loss", "0.2", *SUBSETS, cwd=cwd))
    assert "stage 3 done" in out and "FLOPs (M)" in out
    pruned = tmp_path / "output" / "mobilenetv2_prune" / "best_model"
    info = yaml.safe_load((pruned / "model.yml").read_text())
    assert info["status"] == "Prune"
    assert info["prune"]["flops_after"] < info["prune"]["flops_before"]

    # stage 3, method 2: the bundled DEFAULT file, with its provenance logged
    proc = run("mobilenetv2.py", "--num_epochs", "1", "--sensitivities_file", "DEFAULT",
               "--save_dir", "output/mobilenetv2_prune_default", *SUBSETS, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sensitivities_file='DEFAULT' uses MobileNetV2.json, computed on the paddleprune embedded demo set" in (
        proc.stdout + proc.stderr)
    assert "computed for another configuration: scale=0.25 (file: 0.5)" in proc.stdout + proc.stderr
    info = yaml.safe_load((tmp_path / "output" / "mobilenetv2_prune_default" / "best_model" / "model.yml")
                          .read_text())
    assert info["status"] == "Prune" and info["prune"]["sensitivities_file"].endswith("MobileNetV2.json")


def test_missing_inputs_give_hints(tmp_path):
    proc = run("mobilenetv2.py", "--num_epochs", "1", cwd=str(tmp_path))
    assert proc.returncode == 2 and "run train.py first" in proc.stderr
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.yml").write_text("status: Normal\n")
    proc = run("mobilenetv2.py", "--model_dir", "m", cwd=str(tmp_path))
    assert proc.returncode == 2 and "run cal_sensitivities_file.py first" in proc.stderr
