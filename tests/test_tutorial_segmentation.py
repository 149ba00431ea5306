"""The PaddleX-style tutorial in tutorials/compress/segmentation/, run as a user would: the three
scripts as subprocesses in a temporary folder with their default paths, short runs."""
import dataclasses
import inspect
import json
import os
import subprocess
import sys

import pytest
import yaml

TUTORIAL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tutorials", "compress", "segmentation")

#: steps per epoch the schedules are compared at (600 demo images / batch 8)
STEPS = 75


def describe_schedule(kwargs):
    """What ``train()`` keywords of a schedule make: the optimizer ``train()`` builds from the
    ``optimizer`` factory (class, learning-rate scheduler and its settings), or None for ``train()``'s
    default Momentum, which ``learning_rate`` and ``lr_decay_power`` describe."""
    import paddle
    out = {k: v for k, v in kwargs.items() if k != "optimizer"}
    out["optimizer"] = None
    if kwargs.get("optimizer") is not None:
        opt = kwargs["optimizer"]([paddle.create_parameter([2], "float32")])
        lr = opt._learning_rate
        out["optimizer"] = type(opt).__name__
        out["lr"] = [type(lr).__name__] + [getattr(lr, k, None) for k in ("base_lr", "decay_steps", "end_lr",
                                                                          "power", "cycle")]
    return out


#: run inside the tutorial folder (so ``import train`` finds the scripts): their defaults, transforms and
#: the optimizer / schedule train.py and unet.py give train() (both optimizers)
DEFAULTS_PROBE = inspect.getsource(describe_schedule) + f"""
import json
import cal_sensitivities_file, train, unet
print(json.dumps({{
    "input_size": train.INPUT_SIZE,
    "train": vars(train.parse_args([])), "cal": vars(cal_sensitivities_file.parse_args([])),
    "unet": vars(unet.parse_args([])),
    "train_transforms": train.train_transforms().to_config_list(),
    "eval_transforms": train.eval_transforms().to_config_list(),
    "schedules": {{f"{{name}}_{{opt}}": describe_schedule(train.schedule(mod.parse_args(["--optimizer", opt]), {STEPS}))
                  for name, mod in (("train", train), ("unet", unet)) for opt in ("adam", "momentum")}},
}}))
"""


def run(script, *args, cwd, timeout=600):
    return subprocess.run([sys.executable, os.path.join(TUTORIAL, script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def check(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n" \
                                 f"--- stderr\n{proc.stderr[-5000:]}"
    return proc.stdout


def test_scripts_have_help(tmp_path):
    for script in ("train.py", "cal_sensitivities_file.py", "unet.py"):
        out = check(run(script, "--help", cwd=tmp_path))
        assert "--help" in out
        if script == "cal_sensitivities_file.py":
            assert "--model_dir" in out and "--dataset" in out and "--save_file" in out
    assert "--model_dir" in out and "--sensitivities_file" in out and "DEFAULT" in out and "--eval_metric_loss" in out


def test_missing_inputs_give_hints(tmp_path):
    for script in ("cal_sensitivities_file.py", "unet.py"):
        proc = run(script, cwd=str(tmp_path))
        assert proc.returncode == 2 and "run train.py first" in proc.stderr, proc.stderr[-2000:]


def test_settings_match_the_pipeline():
    """The tutorial trains as `paddleprune pipeline --task segmentation` does (full settings)."""
    from paddleprune.pipeline.tasks import get_task
    from paddleprune.prune.sensitive import DEFAULT_RATIOS
    spec = get_task("segmentation")
    full = spec.full
    proc = subprocess.run([sys.executable, "-c", DEFAULTS_PROBE], cwd=TUTORIAL, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    got = json.loads(check(proc).strip().splitlines()[-1])
    assert got["input_size"] == spec.input_size
    assert got["train_transforms"] == spec.transforms("train").to_config_list()
    assert got["eval_transforms"] == spec.transforms("eval").to_config_list()
    train, cal, unet = got["train"], got["cal"], got["unet"]
    assert spec.model == "UNet" and train["scale"] == {**spec.model_kwargs, **full.model_kwargs}["scale"]
    assert (train["optimizer"], train["num_epochs"], train["batch_size"], train["learning_rate"],
            train["save_interval_epochs"]) == \
        (full.optimizer, full.epochs, full.batch_size, full.learning_rate, full.save_interval)
    # stage 3: the pipeline retrains with half the learning rate, the same optimizer, batch and channel alignment
    assert (unet["optimizer"], unet["num_epochs"], unet["batch_size"], unet["learning_rate"], unet["round_to"],
            unet["save_interval_epochs"]) == \
        (full.optimizer, full.prune_epochs, full.batch_size, full.learning_rate / 2, full.round_to,
         full.save_interval)
    # what train() is given: the pipeline's optimizer and schedule (Adam with polynomial decay over the run,
    # or train()'s default Momentum), for the defaults and for the other --optimizer
    for name, lr, epochs in (("train", full.learning_rate, full.epochs),
                             ("unet", full.learning_rate / 2, full.prune_epochs)):
        for opt in ("adam", "momentum"):
            settings = dataclasses.replace(full, optimizer=opt)
            want = describe_schedule(spec.schedule(settings, lr, STEPS, epochs, full.lr_decay_epochs))
            assert got["schedules"][f"{name}_{opt}"] == json.loads(json.dumps(want)), (name, opt)
    assert got["schedules"]["train_adam"]["optimizer"] == "Adam"
    assert got["schedules"]["train_momentum"]["optimizer"] is None
    # stage 2: the pipeline's 64 validation images, ratios 0.1 ... 0.9, its evaluation batch
    assert cal["eval_subset"] == full.sensitivity_images == 64 and cal["ratios"] is None
    assert tuple(full.ratios) == tuple(DEFAULT_RATIOS) and cal["batch_size"] == full.eval_batch_size
    # the default paths chain: each stage reads what the one before wrote
    assert cal["model_dir"] == unet["model_dir"] == os.path.join(train["save_dir"], "best_model")
    assert cal["save_file"] == unet["sensitivities_file"]


@pytest.mark.slow
def test_tutorial_three_stages(tmp_path):
    from paddleprune.tasks.pruning import read_manifest
    cwd = str(tmp_path)
    tiny = ("--train_subset", "16", "--eval_subset", "16")
    # stage 1: one epoch of a x0.125 UNet on 16 images (miou is then above 0 from the background class,
    # enough as stage 2's baseline)
    out = check(run("train.py", "--num_epochs", "1", "--scale", "0.125", *tiny, cwd=cwd))
    assert "stage 1 done" in out
    best = tmp_path / "output" / "unet" / "best_model"
    info = yaml.safe_load((best / "model.yml").read_text())
    assert info["Model"] == "UNet" and info["status"] == "Normal" and info["_init_params"]["scale"] == 0.125
    assert info["_Attributes"]["eval_metrics"]["miou"] > 0
    assert (tmp_path / "output" / "unet" / "vdl_log").is_dir()

    # stage 2: sensitivities of every encoder / decoder group, and pdx.slim.visualize's plot
    out = check(run("cal_sensitivities_file.py", "--eval_subset", "16", "--ratios", "0.5", cwd=cwd))
    assert "stage 2 done" in out and (tmp_path / "unet.sensi.json").is_file()
    assert (tmp_path / "sensitivities.png").is_file() and (tmp_path / "sensitivities_xy.json").is_file()
    names = set(json.loads((tmp_path / "unet.sensi.json").read_text())["sensitivities"])
    # both convs of every encoder and decoder block (the skip producers too); the logit conv stays whole
    assert len(names) == 18 and all(n.startswith(("encode.", "decode.")) for n in names)

    # stage 3, method 1: prune with our own file and retrain; the architecture (scale) comes from model.yml
    out = check(run("unet.py", "--num_epochs", "1", "--eval_metric_loss", "0.5", *tiny, cwd=cwd))
    assert "stage 3 done" in out and "FLOPs (M)" in out and "val miou" in out
    info = yaml.safe_load((tmp_path / "output" / "unet_prune" / "best_model" / "model.yml").read_text())
    assert info["status"] == "Prune" and info["_init_params"]["scale"] == 0.125
    assert info["prune"]["flops_after"] < info["prune"]["flops_before"] and info["prune"]["round_to"] == 8

    # stage 3, method 2: the bundled DEFAULT file for UNet, or, before `paddleprune build-default --task
    # segmentation` has installed one, a clear error with that hint
    proc = run("unet.py", "--num_epochs", "1", "--sensitivities_file", "DEFAULT", "--save_dir",
               "output/unet_prune_default", *tiny, cwd=cwd)
    if "UNet" in read_manifest():
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "sensitivities_file='DEFAULT' uses " in proc.stdout + proc.stderr
        info = yaml.safe_load((tmp_path / "output" / "unet_prune_default" / "best_model" / "model.yml").read_text())
        assert info["status"] == "Prune"
    else:
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "no bundled file for 'UNet'" in proc.stderr
        assert "paddleprune build-default --task segmentation" in proc.stderr
