"""Data-parallel helpers on ``paddle.distributed`` (launch, gloo / NCCL collectives).

A process started by ``python -m paddle.distributed.launch --nproc_per_node N script.py``
is one rank of N; everything here is a no-op in a single process, so code calls it
unconditionally. Every rank must reach the same collective calls in the same order.
"""
import contextlib
import os
import sys

__all__ = ["world", "is_main", "init", "barrier", "all_gather", "broadcast", "shard", "broadcast_params",
           "average_statistics", "local_evaluation", "evaluation_ranks", "launch_command"]


def world():
    """``(rank, world_size)`` of this process, as set by ``paddle.distributed.launch``
    (``(0, 1)`` when it was not launched)."""
    return int(os.environ.get("PADDLE_TRAINER_ID", 0)), int(os.environ.get("PADDLE_TRAINERS_NUM", 1))


_local = {"depth": 0}


@contextlib.contextmanager
def local_evaluation():
    """Within the block ``evaluate()`` runs the whole data set in this process, with no
    exchange between ranks: for work already split by rank (sensitivity points), where the
    ranks evaluate different models a different number of times."""
    _local["depth"] += 1
    try:
        yield
    finally:
        _local["depth"] -= 1


def evaluation_ranks():
    """How many ranks share an ``evaluate()``: the world size, or 1 in :func:`local_evaluation`."""
    return 1 if _local["depth"] else init()


def is_main():
    """True on rank 0, the rank that writes checkpoints, reports and logs."""
    return world()[0] == 0


def init():
    """Join the process group once (``paddle.distributed.init_parallel_env``); returns the world size."""
    nranks = world()[1]
    if nranks > 1:
        import paddle.distributed as dist
        if not dist.is_initialized():
            dist.init_parallel_env()
    return nranks


def barrier():
    """Wait until every rank is here."""
    if init() > 1:
        import paddle.distributed as dist
        dist.barrier()


def all_gather(obj):
    """``[rank 0's obj, rank 1's obj, ...]`` (any picklable object); ``[obj]`` in one process."""
    if init() == 1:
        return [obj]
    import paddle.distributed as dist
    out = []
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    return all_gather(obj)[0]


def shard(n, nranks=None):
    """The indices of ``range(n)`` this rank takes: every ``nranks``-th (default: the world
    size), starting at its rank (all of them when ``nranks`` is 1)."""
    rank, size = world()
    size = size if nranks is None else nranks
    return range(rank if size > 1 else 0, n, size)


def launch_command(nproc, args, ips=None, log_dir=None):
    """The ``python -m paddle.distributed.launch`` command that runs ``paddleprune ARGS`` as
    ``nproc`` ranks on this machine (``ips``: every machine of a multi-machine run, each
    running the same command)."""
    import paddleprune
    main = os.path.join(os.path.dirname(os.path.abspath(paddleprune.__file__)), "entry", "paddleprune_cli.py")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc)]
    if ips:
        cmd += ["--ips", ips]
    if log_dir:
        cmd += ["--log_dir", log_dir]
    return cmd + [main] + list(args)


def broadcast_params(layer):
    """Give every rank rank 0's parameters and buffers (in place)."""
    if init() > 1:
        import paddle.distributed as dist
        for tensor in layer.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_statistics(layer):
    """Average what training updates without gradients (BatchNorm's running mean and
    variance, which Paddle keeps as parameters with ``stop_gradient``) over the ranks, in
    place: DataParallel averages gradients only, so without this the ranks would evaluate,
    and rank 0 would save, different models."""
    nranks = init()
    if nranks > 1:
        import paddle
        import paddle.distributed as dist
        for tensor in layer.state_dict().values():
            if tensor.stop_gradient and tensor.dtype in (paddle.float32, paddle.float64):
                dist.all_reduce(tensor)
                tensor.set_value(tensor / nranks)
