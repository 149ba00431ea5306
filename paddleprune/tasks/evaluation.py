"""The evaluation loop behind ``evaluate()``, in one process or sharded across ranks.

Under ``paddle.distributed.launch`` the batches of one process are dealt out to the N ranks
(rank r runs batches r, r + N, ...); after each round the ranks exchange their
post-processed outputs and targets (as numpy, without the network inputs) and every rank
feeds them to its metric in the single-process order. Metrics stream as in one process and
come out equal to a single-process evaluation, on every rank.
"""
import math

import numpy as np
import paddle

from paddleprune.prune.graph import eval_mode
from paddleprune.tasks.progress import progress_bar
from paddleprune.utils import dist

__all__ = ["run_evaluation"]


def run_evaluation(task, dataset, batch_size, metric):
    """Feed ``metric`` with ``task``'s post-processed outputs over ``dataset``."""
    nranks = dist.evaluation_ranks()
    n = len(dataset)
    batches = [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
    rounds = math.ceil(len(batches) / nranks)     # every rank takes part in each round's exchange
    loader = paddle.io.DataLoader(dataset, num_workers=0, collate_fn=task.collate_fn("eval"),
                                  batch_sampler=[batches[i] for i in dist.shard(len(batches), nranks=nranks)])
    own = iter(loader)
    bar = progress_bar(rounds, "eval")
    try:
        with eval_mode(task.net), paddle.no_grad():
            for _ in range(rounds):
                batch, pair = next(own, None), None
                if batch is not None:
                    inputs, targets = task.split_batch(batch)
                    pair = (task.postprocess(task.run_net(inputs), targets), targets)
                if nranks == 1:
                    metric.update(*pair)
                else:
                    for got in dist.all_gather(None if pair is None else _to_numpy(pair, skip=inputs)):
                        if got is not None:
                            metric.update(*got)
                bar.update(1)
    finally:
        bar.close()
    return metric


def _to_numpy(tree, skip=()):
    """``tree`` (tensors in lists, tuples, dicts) with numpy arrays for tensors; the tensors in
    ``skip`` (the network inputs, which the metric does not read) are left out."""
    if any(tree is s for s in skip):
        return None
    if isinstance(tree, paddle.Tensor):
        return np.asarray(tree.numpy())
    if isinstance(tree, dict):
        return {k: _to_numpy(v, skip) for k, v in tree.items() if not any(v is s for s in skip)}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_numpy(v, skip) for v in tree)
    return tree
