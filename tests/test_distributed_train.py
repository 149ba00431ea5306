"""Data-parallel train() under `python -m paddle.distributed.launch --nproc_per_node 2` (gloo, CPU):
the ranks train one model, rank 0 alone writes, evaluation equals a single-process one, pruning is the
same on every rank, and a run killed on one rank resumes to the weights of an uninterrupted run."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

import paddleprune
from task_data import dataset, write_subsets

TESTS = os.path.dirname(os.path.abspath(__file__))

SCRIPT = r'''
import json, os, sys
import numpy as np, paddle
sys.path.insert(0, TESTS)
from task_data import dataset
from paddleprune import cls, slim
from paddleprune.errors import InvalidParameterError

out, mode = sys.argv[1], sys.argv[2]
lists = json.load(open(os.path.join(out, "lists.json")))
rank = int(os.environ["PADDLE_TRAINER_ID"])
np.random.seed(7)
paddle.seed(7 + rank)              # different random weights per rank: train() must start every rank from rank 0's
model = cls.MobileNetV2(num_classes=10, scale=0.25)
args = dict(train_batch_size=32, learning_rate=0.05, warmup_steps=2, lr_decay_epochs=[2], log_interval_steps=1,
            eval_dataset=dataset(lists, "val"))
result = {}
if mode == "killed":                # rank 1 dies in epoch 2, step 2
    real, calls = model.compute_loss, {"n": 0}

    def dying(outputs, labels):
        calls["n"] += 1
        if calls["n"] == 5 and rank == 1:
            os._exit(3)
        return real(outputs, labels)

    model.compute_loss = dying
    model.train(2, dataset(lists, "train"), save_dir=os.path.join(out, "killed"), **args)
elif mode == "resume":
    model.train(2, dataset(lists, "train"), save_dir=os.path.join(out, "killed"),
                resume_checkpoint=os.path.join(out, "killed", "epoch_1"), **args)
else:
    try:
        model.train(1, dataset(lists, "train"), save_dir=os.path.join(out, "bad"), **dict(args, train_batch_size=33))
    except InvalidParameterError as exc:
        result["bad_batch"] = str(exc)
    model.train(2, dataset(lists, "train"), save_dir=os.path.join(out, "full"), use_vdl=True, **args)
    result["eval"] = {k: float(v) for k, v in model.evaluate(dataset(lists, "val"), batch_size=7).items()}
    sen_file = os.path.join(out, "sens.json")
    slim.cal_params_sensitivities(model, sen_file, dataset(lists, "sens"), batch_size=16, ratios=[0.3, 0.6])
    pruned = cls.MobileNetV2(num_classes=10, scale=0.25)
    pruned.train(1, dataset(lists, "train"), save_dir=os.path.join(out, "pruned"), sensitivities_file=sen_file,
                 eval_metric_loss=0.3, pretrain_weights=os.path.join(out, "full", "epoch_2"), **args)
    result["pruned_shapes"] = [list(p.shape) for p in pruned.net.parameters()]
    result["pruned_eval"] = {k: float(v) for k, v in pruned.eval_metrics.items()}
json.dump(result, open(os.path.join(out, f"{mode}_rank{rank}.json"), "w"))
'''.replace("TESTS", repr(TESTS))


def launch(folder, mode):
    """Run the script as 2 ranks; the completed process (workers' logs in folder/log_MODE)."""
    script = os.path.join(folder, "script.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(SCRIPT)
    log_dir = os.path.join(folder, f"log_{mode}")
    proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                           "--log_dir", log_dir, script, folder, mode], capture_output=True, text=True, timeout=900)
    proc.logs = {r: _read(os.path.join(log_dir, f"workerlog.{r}")) for r in (0, 1)}
    return proc


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _failed(proc):
    return f"exit {proc.returncode}\nrank 0:\n{proc.logs[0][-2500:]}\nrank 1:\n{proc.logs[1][-2500:]}"


def _results(folder, mode):
    return [json.load(open(os.path.join(folder, f"{mode}_rank{r}.json"))) for r in (0, 1)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("dp"))
    lists = write_subsets(folder)
    with open(os.path.join(folder, "lists.json"), "w") as f:
        json.dump(lists, f)
    proc = launch(folder, "train")
    assert proc.returncode == 0, _failed(proc)
    return folder, lists, proc


def test_two_ranks_train_one_model_and_evaluate_like_one_process(run):
    folder, lists, proc = run
    ranks = _results(folder, "train")
    assert "the batch of all 2 processes together" in ranks[0]["bad_batch"] and "got 33" in ranks[0]["bad_batch"]
    # the saved model, evaluated in this single process, gives what both ranks computed together
    saved = paddleprune.load_model(os.path.join(folder, "full", "epoch_2"))
    single = {k: float(v) for k, v in saved.evaluate(dataset(lists, "val"), batch_size=7).items()}
    assert ranks[0]["eval"] == ranks[1]["eval"] == single
    with open(os.path.join(folder, "full", "epoch_2", "model.yml"), encoding="utf-8") as f:
        recorded = yaml.safe_load(f)["_Attributes"]["eval_metrics"]
    assert recorded == pytest.approx(single)
    # rank 0 alone writes: one VisualDL file, and the 'saved' log lines only in rank 0's log
    assert len(os.listdir(os.path.join(folder, "full", "vdl_log"))) == 1
    assert "saved to best_model" in proc.logs[0] and "saved to best_model" not in proc.logs[1]
    assert "[TRAIN] Epoch=2/2, Step=3/3" in proc.logs[1]     # 96 images, 32 a step: 16 on each rank


def test_every_rank_prunes_the_same_channels(run):
    folder, _, _ = run
    ranks = _results(folder, "train")
    assert ranks[0]["pruned_shapes"] == ranks[1]["pruned_shapes"]
    pruned = paddleprune.load_model(os.path.join(folder, "pruned", "epoch_1"))
    assert pruned.status == "Prune"
    assert [list(p.shape) for p in pruned.net.parameters()] == ranks[0]["pruned_shapes"]
    full = paddleprune.load_model(os.path.join(folder, "full", "epoch_2"))
    assert sum(np.prod(s) for s in ranks[0]["pruned_shapes"]) < sum(np.prod(p.shape) for p in full.net.parameters())
    assert ranks[0]["pruned_eval"] == ranks[1]["pruned_eval"]


def test_a_killed_rank_resumes_to_the_uninterrupted_weights(run):
    folder, _, _ = run
    killed = launch(folder, "killed")
    assert killed.returncode != 0                              # the launcher stops the job
    assert sorted(os.listdir(os.path.join(folder, "killed"))) == ["best_model", "epoch_1"]
    resumed = launch(folder, "resume")
    assert resumed.returncode == 0, _failed(resumed)
    assert "resumed from" in resumed.logs[0] and "resumed from" in resumed.logs[1]
    ours = paddle.load(os.path.join(folder, "killed", "epoch_2", "model.pdparams"))
    theirs = paddle.load(os.path.join(folder, "full", "epoch_2", "model.pdparams"))
    assert ours.keys() == theirs.keys()
    for name in theirs:
        np.testing.assert_allclose(ours[name].numpy(), theirs[name].numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_launch_options_are_not_passed_on():
    from paddleprune.cli import _without_launch_options
    argv = ["pipeline", "--quick", "--nproc", "2", "--ips=10.0.0.1,10.0.0.2", "--save-dir", "out", "--nproc=3"]
    assert _without_launch_options(argv) == ["pipeline", "--quick", "--save-dir", "out"]


@pytest.mark.slow
def test_pipeline_nproc_runs_every_stage_on_two_ranks(tmp_path):
    from paddleprune.cli import main
    out = tmp_path / "pipeline"
    assert main(["pipeline", "--quick", "--no-latency", "--nproc", "2", "--save-dir", str(out)]) == 0
    logs = {r: _read(out / "log" / f"workerlog.{r}") for r in (0, 1)}
    assert "rank 1 of 2 takes" in logs[1] and "merged 2 part files" in logs[0]
    report = json.load(open(out / "report.json"))
    assert report["pruned"]["flops"] < report["original"]["flops"]
    sen_file = out / "stage2_sensitivities" / "model.sensi.json"
    assert sen_file.is_file() and not list(sen_file.parent.glob("*.rank*-of-*"))
    with open(out / "stage3_pruned" / "best_model" / "model.yml", encoding="utf-8") as f:
        assert yaml.safe_load(f)["status"] == "Prune"
    # a second run finds every stage done and only measures again
    assert main(["pipeline", "--quick", "--no-latency", "--nproc", "2", "--save-dir", str(out)]) == 0
    assert "stage 3/3: done before, skipped" in _read(out / "log" / "workerlog.1")


TASK_SCRIPT = r'''
import json, os, sys
import numpy as np, paddle
from paddleprune.pipeline.run import _subset, load_datasets
from paddleprune.pipeline.tasks import get_task

task, out = sys.argv[1], sys.argv[2]
spec, settings = get_task(task), get_task(task).quick
train_ds, val_ds = load_datasets(spec, settings, spec.demo_data())
train_ds, val_ds = _subset(train_ds, 32), _subset(val_ds, 13)
np.random.seed(1)
paddle.seed(1)
model = spec.build_model(len(train_ds.labels), settings)
model.train(num_epochs=1, train_dataset=train_ds, train_batch_size=8, eval_dataset=val_ds, save_dir=os.path.join(out, "m"),
            **spec.schedule(settings, settings.learning_rate, 4, 1, (), warmup=False))
metrics = model.evaluate(val_ds, batch_size=3)      # 13 images, 5 batches: rank 0 runs 3, rank 1 runs 2
with open(os.path.join(out, f"rank{os.environ['PADDLE_TRAINER_ID']}.json"), "w") as f:
    json.dump({k: float(v) for k, v in metrics.items() if np.isscalar(v)}, f)
'''


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_detection_and_segmentation_train_and_evaluate_on_two_ranks(task, tmp_path):
    from paddleprune.pipeline.run import _subset, load_datasets
    from paddleprune.pipeline.tasks import get_task
    script = tmp_path / "task.py"
    script.write_text(TASK_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
                           str(tmp_path / "log"), str(script), task, str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    proc.logs = {r: _read(tmp_path / "log" / f"workerlog.{r}") for r in (0, 1)}
    assert proc.returncode == 0, _failed(proc)
    spec = get_task(task)
    _, val_ds = load_datasets(spec, spec.quick, spec.demo_data())
    saved = paddleprune.load_model(str(tmp_path / "m" / "epoch_1"))
    single = {k: float(v) for k, v in saved.evaluate(_subset(val_ds, 13), batch_size=3).items() if np.isscalar(v)}
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    assert ranks[0] == ranks[1] == single and len(single) >= 1
