"""The three-stage pipeline end to end, in its quick form, on the embedded data."""
import json
import os

import pytest
import yaml

import paddleprune
from paddleprune.cli import main
from paddleprune.errors import InvalidParameterError
from paddleprune.pipeline import run_pipeline
from paddleprune.tasks.pruning import resolve_sensitivities_file


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``paddleprune demo --quick``: every task, each into ``<save-dir>/<task>``."""
    root = str(tmp_path_factory.mktemp("demo"))
    assert main(["demo", "--quick", "--save-dir", root]) == 0
    return root


@pytest.mark.slow
def test_quick_detection_demo(demo_run):
    out = os.path.join(demo_run, "detection")
    report = json.load(open(os.path.join(out, "report.json")))
    o, p = report["original"], report["pruned"]
    assert report["model"] == "YOLOv3" and o["metric_name"] == p["metric_name"] == "bbox_map"
    assert p["flops"] < o["flops"] and p["params"] < o["params"] and p["size_mb"] < o["size_mb"]
    assert 0 < o["metric"] <= 1 and 0 <= p["metric"] <= 1
    assert o["latency_ms_cpu"] > 0 and p["latency_ms_cpu"] > 0
    assert list(report["latency"]) == ["Paddle Inference (oneDNN, 1 thread)", "ONNX Runtime (1 thread)"]
    pruned = paddleprune.load_model(os.path.join(out, "stage3_pruned", "best_model"))
    assert pruned.status == "Prune" and pruned.sensitivity_key() == "YOLOv3_MobileNetV1"
    outs = [p.shape[0] for n, p in pruned.net.named_parameters() if "yolo_output" in n and n.endswith("weight")]
    assert outs == [3 * (5 + 5)] * 3                    # the output convs keep anchors x (5 + classes)
    assert os.path.isfile(os.path.join(out, "stage2_sensitivities", "sensitivities.png"))


@pytest.mark.slow
def test_quick_segmentation_demo(demo_run):
    out = os.path.join(demo_run, "segmentation")
    report = json.load(open(os.path.join(out, "report.json")))
    o, p = report["original"], report["pruned"]
    assert report["model"] == "UNet" and o["metric_name"] == p["metric_name"] == "miou"
    assert p["flops"] < o["flops"] and p["params"] < o["params"] and p["size_mb"] < o["size_mb"]
    assert 0 < o["metric"] <= 1 and 0 <= p["metric"] <= 1
    assert list(report["latency"]) == ["Paddle Inference (oneDNN, 1 thread)", "ONNX Runtime (1 thread)"]
    pruned = paddleprune.load_model(os.path.join(out, "stage3_pruned", "best_model"))
    assert pruned.status == "Prune" and pruned.sensitivity_key() == "UNet"
    assert pruned.net.logit.weight.shape[0] == len(pruned.labels)     # the classifier conv keeps num_classes
    assert os.path.isfile(os.path.join(out, "stage2_sensitivities", "sensitivities.png"))


@pytest.mark.slow
def test_quick_demo_end_to_end_and_rerun_skips(demo_run, tmp_path):
    out = os.path.join(demo_run, "classification")
    printed = open(os.path.join(out, "report.md")).read()
    assert "| FLOPs |" in printed and "| acc1 (%) |" in printed
    report = json.load(open(os.path.join(out, "report.json")))
    o, p = report["original"], report["pruned"]
    assert p["flops"] < o["flops"] and p["params"] < o["params"] and p["size_mb"] < o["size_mb"]
    assert 0 < o["metric"] <= 1 and 0 < p["metric"] <= 1
    assert o["latency_ms_cpu"] > 0 and p["latency_ms_cpu"] > 0
    assert list(report["latency"]) == ["Paddle Inference (oneDNN, 1 thread)", "ONNX Runtime (1 thread)"]
    for by_batch in report["latency"].values():
        assert list(by_batch) == ["1", "32"]
        assert all(row["original"] > 0 and row["pruned"] > 0 and row["ratio"]["original"] == 1.0
                   for row in by_batch.values())
    assert "| ONNX Runtime (1 thread), batch 32 |" in printed and "multiples of 8" in printed
    info = yaml.safe_load(open(os.path.join(out, "stage3_pruned", "best_model", "model.yml")))
    assert info["prune"]["round_to"] == report["round_to"] == 8
    pruned = paddleprune.load_model(os.path.join(out, "stage3_pruned", "best_model"))
    original = paddleprune.load_model(os.path.join(out, "stage1_train", "best_model")).net
    changed = [p2.shape[0] for (n, p1), (_, p2) in zip(original.named_parameters(), pruned.net.named_parameters())
               if n.endswith("weight") and len(p1.shape) == 4 and p1.shape[0] != p2.shape[0]]
    assert changed and all(c % 8 == 0 for c in changed)
    for stage in ("stage1_train", "stage2_sensitivities", "stage3_pruned"):
        assert os.path.isfile(os.path.join(out, stage, ".done"))
    assert os.path.isfile(os.path.join(out, "stage2_sensitivities", "sensitivities.png"))
    assert os.path.isfile(os.path.join(out, "report.md"))
    # a re-run skips the finished stages and gives the same model figures
    again = run_pipeline(save_dir=out, quick=True, latency=False)
    assert again["pruned"]["flops"] == p["flops"] and again["pruned"]["metric"] == p["metric"]
    assert again["seconds"] < report["seconds"]
    # build-default on the same folder reuses stages 1 and 2 and installs the file
    builtin = tmp_path / "builtin"
    assert main(["build-default", "--quick", "--save-dir", out, "--builtin-dir", str(builtin)]) == 0
    entry = json.loads((builtin / "manifest.json").read_text())["files"]["MobileNetV2"]
    stage2_file = os.path.join(out, "stage2_sensitivities", "model.sensi.json")
    assert (builtin / entry["file"]).read_bytes() == open(stage2_file, "rb").read()
    assert entry["model_params"] == {"scale": 0.25, "small_input": True} and entry["input_shape"] == [1, 3, 32, 32]
    meta = json.load(open(stage2_file))["meta"]   # the baseline on the 128 sensitivity images
    assert entry["metric"] == "acc1" and entry["baseline"] == meta["baseline"] and 0 < entry["baseline"] <= 1
    assert "embedded classification demo set" in entry["dataset"] and "64 validation images" in entry["dataset"]
    assert entry["command"] == f"paddleprune build-default --quick --save-dir {out} --builtin-dir {builtin}"
    assert resolve_sensitivities_file("t", "DEFAULT", "MobileNetV2", builtin_dir=str(builtin)) == str(
        builtin / "MobileNetV2.json")


def test_bad_pipeline_arguments(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"unknown task 'detection3d'; available: \['classification', 'detection', 'segmentation'\]"):
        run_pipeline(task="detection3d", save_dir=str(tmp_path))
    with pytest.raises(InvalidParameterError, match=r"'eval_metric_loss' must be a number in \(0, 1\); got 1.5"):
        run_pipeline(eval_metric_loss=1.5, save_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train_list.txt does not exist"):
        run_pipeline(data_dir=str(tmp_path), save_dir=str(tmp_path / "o"))


def test_install_default_adds_to_the_manifest(tmp_path):
    from paddleprune.pipeline.default import install_default
    builtin = tmp_path / "builtin"
    src = tmp_path / "a.json"
    src.write_text('{"first": 1}')
    install_default(str(src), "UNet", {"metric": "miou"}, builtin_dir=str(builtin))
    src.write_text('{"second": 2}')
    path = install_default(str(src), "MobileNetV2", {"metric": "acc1"}, builtin_dir=str(builtin))
    files = json.loads((builtin / "manifest.json").read_text())["files"]
    assert list(files) == ["MobileNetV2", "UNet"] and files["UNet"]["file"] == "UNet.json"
    assert files["MobileNetV2"]["metric"] == "acc1" and len(files["MobileNetV2"]["date"]) == 10
    assert open(path).read() == '{"second": 2}' and (builtin / "UNet.json").read_text() == '{"first": 1}'
    assert sorted(os.listdir(builtin)) == ["MobileNetV2.json", "UNet.json", "manifest.json"]  # no temp files left
