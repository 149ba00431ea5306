"""The PaddleX-style tutorial in tutorials/compress/detection/, run as a user would: the three
scripts as subprocesses in a temporary folder with their default paths, short runs."""
import os
import subprocess
import sys

import pytest
import yaml

TUTORIAL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tutorials", "compress", "detection")


def run(script, *args, cwd, timeout=600):
    return subprocess.run([sys.executable, os.path.join(TUTORIAL, script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def check(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n" \
                                 f"--- stderr\n{proc.stderr[-5000:]}"
    return proc.stdout


def test_scripts_have_help(tmp_path):
    for script in ("train.py", "cal_sensitivities_file.py", "yolov3_mobilenet.py"):
        out = check(run(script, "--help", cwd=tmp_path))
        assert "--help" in out
    assert "--sensitivities_file" in out and "DEFAULT" in out and "--eval_metric_loss" in out


def test_missing_inputs_give_hints(tmp_path):
    proc = run("yolov3_mobilenet.py", "--num_epochs", "1", cwd=str(tmp_path))
    assert proc.returncode == 2 and "run train.py first" in proc.stderr


@pytest.mark.slow
def test_tutorial_three_stages(tmp_path):
    cwd = str(tmp_path)
    # stage 1: a 3-epoch backbone classifier, then 3 epochs of the detector on every training image (as the
    # quick pipeline: enough for a bbox_map above 0, which stage 2 needs as its baseline)
    out = check(run("train.py", "--num_epochs", "3", "--backbone_epochs", "3", "--backbone_scale", "0.25",
                    "--eval_subset", "64",
                    "--nms_score_threshold", "0.001", cwd=cwd))
    assert "stage 1 done" in out and "backbone from output/yolov3_mobilenet_backbone/best_model" in out
    best = tmp_path / "output" / "yolov3_mobilenet" / "best_model"
    info = yaml.safe_load((best / "model.yml").read_text())
    assert info["Model"] == "YOLOv3" and info["status"] == "Normal" and info["_Attributes"]["eval_metrics"]["bbox_map"] > 0

    # stage 2: sensitivities of the whole detector and their plot
    out = check(run("cal_sensitivities_file.py", "--eval_subset", "64", "--ratios", "0.5", cwd=cwd))
    assert "stage 2 done" in out and (tmp_path / "yolov3.sensi.json").is_file()
    assert (tmp_path / "sensitivities.png").is_file()

    # stage 3, method 1: prune with our own file and retrain
    out = check(run("yolov3_mobilenet.py", "--num_epochs", "1", "--eval_metric_loss", "0.5",
                    "--train_subset", "160", "--eval_subset", "64", cwd=cwd))
    assert "stage 3 done" in out and "FLOPs (M)" in out
    info = yaml.safe_load((tmp_path / "output" / "yolov3_mobilenet_prune" / "best_model" / "model.yml").read_text())
    assert info["status"] == "Prune" and info["prune"]["flops_after"] < info["prune"]["flops_before"]

    # stage 3, method 2: the bundled DEFAULT file for YOLOv3_MobileNetV1
    proc = run("yolov3_mobilenet.py", "--num_epochs", "1", "--sensitivities_file", "DEFAULT",
               "--save_dir", "output/yolov3_prune_default", "--train_subset", "160", "--eval_subset", "64", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sensitivities_file='DEFAULT' uses YOLOv3_MobileNetV1.json" in proc.stdout + proc.stderr
    info = yaml.safe_load((tmp_path / "output" / "yolov3_prune_default" / "best_model" / "model.yml").read_text())
    assert info["status"] == "Prune"
