"""Sensitivity analysis shared by 2 ranks of ``paddle.distributed.launch`` (real processes, gloo on CPU).

The reference is a 1-process run of the same script (no launcher, OMP_NUM_THREADS=1 as the
launcher gives each rank), so the ranks' files and tables must equal it exactly.
"""
import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
RATIOS = [0.2, 0.5, 0.8]
GROUPS = ["a.0.weight", "b.0.weight", "c.0.weight"]       # TwoBranchConcat: rank 0 takes a, c; rank 1 takes b

SCRIPT = textwrap.dedent('''
    """One sensitivity analysis of TwoBranchConcat; argv: tests_dir out_dir config [config ...].

    config: '<file|nofile>-<method>', e.g. 'file-fast' (eval_batches + score_fn, method 'fast',
    a sen_file), 'file-dygraph' (the same in dygraph), 'nofile-evalfunc' (an eval_func that deals
    its batches out to the ranks and gathers the outputs, like model.evaluate under the
    launcher; no sen_file). Writes
    out_dir/<config>.rank<r>.json: the returned table, the number of score calls, threads.
    SENS_KILL_AFTER=k: rank 1 exits (os._exit(1)) when its (k+1)-th point starts, i.e. after k points.
    """
    import json
    import os
    import sys

    tests_dir, out_dir, configs = sys.argv[1], sys.argv[2], sys.argv[3:]
    sys.path.insert(0, tests_dir)
    import numpy as np
    import paddle

    import nets
    from engine_checks import fixed_eval
    from paddleprune.prune import L1NormFilterPruner
    from paddleprune.prune.runtime_eval import cpu_threads
    from paddleprune.utils import dist

    RATIOS = [0.2, 0.5, 0.8]
    rank, nranks = dist.world()
    kill_after = int(os.environ.get("SENS_KILL_AFTER", 0)) if rank == 1 else 0
    for config in configs:
        paddle.seed(rank if os.environ.get("SENS_SEED_BY_RANK") else 0)   # the same weights on every rank
        model = nets.TwoBranchConcat()
        batches, _, _ = fixed_eval(model)
        with paddle.no_grad():
            labels = [paddle.argmax(model(b), axis=1) for b in batches]

        def score(outputs):                # continuous (mean probability of the label): every point differs
            return float(np.mean([paddle.take_along_axis(paddle.nn.functional.softmax(o, axis=1),
                                                         l.unsqueeze(1), axis=1).mean().item()
                                  for o, l in zip(outputs, labels)]))

        calls = {"n": 0}

        def counted(outputs):
            calls["n"] += 1                # dygraph: 1 call for the baseline, then 1 per point
            if kill_after and calls["n"] == 1 + kill_after + 1:
                os._exit(1)
            return score(outputs)

        def sharded_eval():
            """Each rank runs its share of the batches and the outputs are gathered, as model.evaluate
            does under the launcher (dist.evaluation_ranks() says how many ranks share it)."""
            calls["n"] += 1
            n = dist.evaluation_ranks()
            with paddle.no_grad():
                mine = {i: model(batches[i]).numpy() for i in dist.shard(len(batches), nranks=n)}
            outs = {}
            for got in (dist.all_gather(mine) if n > 1 else [mine]):
                outs.update(got)
            return score([paddle.to_tensor(outs[i]) for i in range(len(batches))])

        pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
        kind, method = config.split("-")
        sen_file = os.path.join(out_dir, f"{config}.json") if kind == "file" else None
        if method == "evalfunc":
            table = pruner.sensitive(eval_func=sharded_eval, ratios=RATIOS, metric="acc")
        else:
            table = pruner.sensitive(eval_batches=batches, score_fn=counted, sen_file=sen_file, ratios=RATIOS,
                                     method=method, metric="acc", meta={"note": "test"})
        result = {"table": {n: {repr(r): v for r, v in pts.items()} for n, pts in table.items()},
                  "calls": calls["n"], "threads": cpu_threads(), "world": nranks}
        with open(os.path.join(out_dir, f"{config}.rank{rank}.json"), "w") as f:
            json.dump(result, f)
''')


def _write_script(path):
    script = path / "sens_job.py"
    script.write_text(SCRIPT)
    return str(script)


def _tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as exc:
        return f"({exc})"


def _launch(tmp_path, out_dir, *configs, env=None, expect_ok=True, timeout=600, nproc=2):
    """Run the script as ``nproc`` ranks; returns the launcher's return code and the ranks' log tails."""
    log_dir = tmp_path / f"log-{len(list(tmp_path.glob('log-*')))}"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
           str(log_dir), _write_script(tmp_path), TESTS_DIR, str(out_dir), *configs]
    proc = subprocess.run(cmd, env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                          timeout=timeout, cwd=str(tmp_path))
    logs = "\n".join(f"--- workerlog.{r}:\n{_tail(log_dir / f'workerlog.{r}')}" for r in range(nproc))
    if expect_ok:
        assert proc.returncode == 0, f"launch failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n{logs}"
    return proc.returncode, logs


def _read(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process files and tables of every config (one process, one thread per op as a rank)."""
    out = tmp_path_factory.mktemp("reference")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, _write_script(out), TESTS_DIR, str(out), "file-fast", "file-dygraph",
                           "nofile-evalfunc"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _assert_merged(out_dir, config, reference, nproc=2):
    sen_file = out_dir / f"{config}.json"
    assert _read(sen_file) == _read(reference / f"{config}.json")      # the whole file: table and meta
    assert sen_file.read_text() == (reference / f"{config}.json").read_text()    # even the same bytes
    assert not glob.glob(str(sen_file) + ".rank*"), "part files left behind"
    want = _read(reference / f"{config}.rank0.json")["table"]
    for rank in range(nproc):
        got = _read(out_dir / f"{config}.rank{rank}.json")
        assert got["table"] == want and got["world"] == nproc and got["threads"] == 1


def test_sharded_file_equals_single_process_file(tmp_path, reference):
    out = tmp_path / "out"
    out.mkdir()
    _launch(tmp_path, out, "file-fast")
    meta = _read(out / "file-fast.json")["meta"]
    assert meta["method"] == _read(reference / "file-fast.json")["meta"]["method"]
    assert list(_read(out / "file-fast.json")["sensitivities"]) == GROUPS          # target order
    _assert_merged(out, "file-fast", reference)
    # a re-run finds everything done: no evaluation at all, the file untouched
    before = (out / "file-fast.json").stat().st_mtime_ns
    _launch(tmp_path, out, "file-fast")
    assert [_read(out / f"file-fast.rank{r}.json")["calls"] for r in range(2)] == [0, 0]
    assert (out / "file-fast.json").stat().st_mtime_ns == before


def test_killed_rank_resumes_without_recomputing(tmp_path, reference):
    out = tmp_path / "out"
    out.mkdir()
    code, logs = _launch(tmp_path, out, "file-dygraph", env={"SENS_KILL_AFTER": "2"}, expect_ok=False, timeout=300)
    assert code != 0, f"the launcher did not stop the job when rank 1 died:\n{logs}"
    sen_file = out / "file-dygraph.json"
    assert not sen_file.exists()                       # rank 0 never merged
    part1 = _read(str(sen_file) + ".rank1-of-2")       # rank 1's 2 finished points, as one process has them
    want = _read(reference / "file-dygraph.json")
    b = want["sensitivities"]["b.0.weight"]
    assert part1["sensitivities"] == {"b.0.weight": {"0.2": b["0.2"], "0.5": b["0.5"]}}
    assert part1["meta"] == want["meta"]
    part0 = str(sen_file) + ".rank0-of-2"
    done0 = sum(len(p) for p in _read(part0)["sensitivities"].values()) if os.path.exists(part0) else 0

    _launch(tmp_path, out, "file-dygraph")
    calls = [_read(out / f"file-dygraph.rank{r}.json")["calls"] for r in range(2)]
    assert calls == [1 + 2 * len(RATIOS) - done0, 1 + 1], calls      # baseline + the missing points only
    _assert_merged(out, "file-dygraph", reference)


def test_without_file_every_rank_returns_the_whole_table(tmp_path, reference):
    out = tmp_path / "out"
    out.mkdir()
    _launch(tmp_path, out, "nofile-evalfunc")
    want = _read(reference / "nofile-evalfunc.rank0.json")
    assert list(want["table"]) == GROUPS
    for rank in range(2):
        got = _read(out / f"nofile-evalfunc.rank{rank}.json")
        assert got["table"] == want["table"] and list(got["table"]) == GROUPS
        # the eval_func ran whole on each rank: baseline + its own points (rank 0: 2 groups, rank 1: 1)
        assert got["calls"] == 1 + (2 if rank == 0 else 1) * len(RATIOS)
    assert not list(out.glob("*.json.rank*"))


def test_more_ranks_than_groups(tmp_path, reference):
    """4 ranks, 3 groups: rank 3 measures nothing but takes part in every exchange; half the
    file is already there (from a single-process run) and is not measured again."""
    out = tmp_path / "out"
    out.mkdir()
    full = _read(reference / "file-dygraph.json")
    half = dict(full, sensitivities={"b.0.weight": full["sensitivities"]["b.0.weight"],
                                     "a.0.weight": {"0.5": full["sensitivities"]["a.0.weight"]["0.5"]}})
    (out / "file-dygraph.json").write_text(json.dumps(half))
    _launch(tmp_path, out, "file-dygraph", nproc=4)
    calls = [_read(out / f"file-dygraph.rank{r}.json")["calls"] for r in range(4)]
    assert calls == [1 + 2, 1 + 0, 1 + 3, 1 + 0], calls        # rank r takes group r: a (2 left), b (done), c, none
    got = _read(out / "file-dygraph.json")
    assert got == full
    assert list(got["sensitivities"]) == ["b.0.weight", "a.0.weight", "c.0.weight"]   # as one process resumes it


def test_ranks_with_different_weights_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code, logs = _launch(tmp_path, out, "nofile-dygraph", env={"SENS_SEED_BY_RANK": "1"}, expect_ok=False,
                         timeout=300)
    assert code != 0
    assert "differs between ranks" in logs and "Every rank must load the same weights" in logs, logs
