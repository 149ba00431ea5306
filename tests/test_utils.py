"""The neutral helpers every part shares: int checks, plain values, atomic folders."""
import os
import stat

import numpy as np
import pytest

from paddleprune.errors import InvalidParameterError
from paddleprune.tasks.params import TrainOptions, check_train_args
from paddleprune.utils.atomic import default_mode, replace_dir, staging_dir
from paddleprune.utils.checks import check_int
from paddleprune.utils.plain import to_plain


@pytest.mark.parametrize("value", [0, True, 2.0, "3", None])
def test_check_int_refuses(value):
    with pytest.raises(InvalidParameterError, match=rf"^T: 'n' must be an int >= 1; got {value!r}\.$"):
        check_int("T", "n", value)


def test_check_int_allow_and_what():
    assert check_int("T", "n", np.int64(-1), allow=(-1,)) == -1 and type(check_int("T", "n", np.int64(4))) is int
    with pytest.raises(InvalidParameterError, match=r"^T: 'n' must be a positive integer; got 0\.$"):
        check_int("T", "n", 0, what="a positive integer")


def test_to_plain_is_yaml_safe_and_shares_nothing():
    inner = {"k": [1]}
    out = to_plain({1: (np.float32(0.5), np.arange(2)), "d": inner})
    assert out == {"1": [0.5, [0, 1]], "d": {"k": [1]}} and type(out["1"][0]) is float
    out["d"]["k"].append(2)
    assert inner == {"k": [1]}


def test_staging_dir_is_removed_on_error_and_has_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "out"
    with pytest.raises(RuntimeError):
        with staging_dir(target) as tmp:
            assert stat.S_IMODE(os.stat(tmp).st_mode) == default_mode()
            open(os.path.join(tmp, "f"), "w").close()
            raise RuntimeError
    assert os.listdir(tmp_path / "sub") == []


def test_replace_dir_swaps_an_existing_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("old")
    with staging_dir(tmp_path / "out") as tmp:
        open(os.path.join(tmp, "new"), "w").close()
        replace_dir(tmp, str(tmp_path / "out"))
    assert os.listdir(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == ["new"]


def test_check_train_args_returns_options():
    args = dict(num_epochs=np.int64(2), train_dataset=[0, 1], train_batch_size=2, eval_dataset=None,
                save_interval_epochs=1, log_interval_steps=1, save_dir="out", pretrain_weights=None, optimizer=None,
                learning_rate=0.1, warmup_steps=0, warmup_start_lr=0.0, lr_decay_epochs=(1,), lr_decay_gamma=0.1,
                use_vdl=False, sensitivities_file=None, eval_metric_loss=0.05, early_stop=False,
                early_stop_patience=5, resume_checkpoint=None, prune_round_to=None)
    options = check_train_args("T.train", args)
    assert isinstance(options, TrainOptions) and type(options.num_epochs) is int and options.lr_decay_epochs == [1]
    assert options.learning_rate == 0.1
