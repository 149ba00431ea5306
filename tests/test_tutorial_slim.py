"""PaddleX 1.x's classification pruning scripts (tutorials/slim/prune/image_classification), with only the
import lines changed, run end to end as a user runs them: train, sensitivities, visualize, pruned retrain,
DEFAULT, load, evaluate, predict, export. The data folder `vegetables_cls` is a small sample of the embedded
set (the scripts train MobileNetV2 x1.0 at 224 x 224, so the whole set would take an hour on 2 cores)."""
import json
import os
import random
import subprocess
import sys

import pytest

from paddleprune.datasets import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tutorials", "slim", "prune", "image_classification")
N_TRAIN, N_VAL = 32, 8


def _sample_data(cwd):
    """`vegetables_cls` in PaddleX's ImageNet layout: the embedded images, a fixed sample of each list."""
    src, dst = demo.classification(), os.path.join(cwd, "vegetables_cls")
    os.makedirs(dst)
    os.symlink(os.path.join(src, "images"), os.path.join(dst, "images"))
    with open(os.path.join(src, "labels.txt"), encoding="utf-8") as f, \
            open(os.path.join(dst, "labels.txt"), "w", encoding="utf-8") as out:
        out.write(f.read())
    for name, n in (("train_list.txt", N_TRAIN), ("val_list.txt", N_VAL)):
        with open(os.path.join(src, name), encoding="utf-8") as f:
            rows = [r for r in f.read().splitlines() if r.strip()]
        random.Random(0).shuffle(rows)
        with open(os.path.join(dst, name), "w", encoding="utf-8") as out:
            out.write("\n".join(rows[:n]) + "\n")


def _run(script, cwd):
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, script)], cwd=cwd, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _pruned_flops(model_dir):
    with open(os.path.join(model_dir, "model.yml"), encoding="utf-8") as f:
        import yaml
        info = yaml.safe_load(f)
    return info


@pytest.mark.slow
def test_paddlex_classification_pruning_scripts(tmp_path):
    cwd = str(tmp_path)
    _sample_data(cwd)
    _run("mobilenetv2_train.py", cwd)
    assert os.path.isfile(tmp_path / "output" / "mobilenetv2" / "best_model" / "model.pdparams")
    assert os.listdir(tmp_path / "output" / "mobilenetv2" / "vdl_log")            # use_vdl=True wrote a log

    _run("params_analysis.py", cwd)
    with open(tmp_path / "mobilenetv2.sensi.data", encoding="utf-8") as f:
        table = json.load(f)
    assert len(table["sensitivities"]) >= 10

    _run("slim_visualize.py", cwd)
    assert os.path.getsize(tmp_path / "sensitivities.png") > 10_000

    log = _run("mobilenetv2_prune_train.py", cwd)
    assert "pruned" in log and "FLOPs" in log
    pruned = tmp_path / "output" / "mobilenetv2_prune" / "best_model"
    assert _pruned_flops(pruned)["status"] == "Prune"

    log = _run("mobilenetv2_prune_default.py", cwd)
    # the bundled MobileNetV2 file was made for x0.5 at 32 x 32: the user is told, and the pruning goes on
    assert "computed for another configuration" in log and "scale=1.0 (file: 0.5)" in log
    assert _pruned_flops(tmp_path / "output" / "mobilenetv2_prune_default" / "best_model")["status"] == "Prune"

    out = _run("deploy.py", cwd)
    assert "eval metrics: " in out and "('acc1', " in out and "predict vegetables_cls/images/" in out and "'category'" in out
    exported = tmp_path / "output" / "mobilenetv2_prune" / "inference_model"
    assert {"model.json", "model.pdiparams", "model.yml"} <= set(os.listdir(exported))
