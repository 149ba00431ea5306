"""Sensitivity analysis shared by the ranks of ``python -m paddle.distributed.launch``.

Rank ``r`` of ``N`` takes ``targets[r::N]``; every rank computes the baseline on the full
evaluation data, and the ranks check that they all got the same one. With a ``sen_file``,
each rank writes its points to its own part file ``<sen_file>.rank<r>-of-<N>`` (atomic,
resumable, the same format and metadata as ``sen_file``); when every rank is done, rank 0
merges ``sen_file`` and the part files into ``sen_file`` (the file one process would have
written) and removes the parts. Without a file the ranks exchange their tables.

Every rank makes the same collective calls in the same order, also a rank with nothing
left to do. In one process :func:`compute_sensitivities` does not use this module.
"""
import glob
import logging
import os

import numpy as np

from paddleprune.errors import InvalidParameterError, SensitivityFileError
from paddleprune.prune.sensitivity_files import (
    check_compatible, load_sensitivities, merge_sensitive, save_sensitivities)
from paddleprune.utils import dist

logger = logging.getLogger(__name__)

__all__ = ["part_file", "ordered", "Shards"]


def part_file(sen_file, rank, nranks):
    """The file rank ``rank`` of ``nranks`` writes its points to."""
    return f"{os.fspath(sen_file)}.rank{rank}-of-{nranks}"


def ordered(table, first, targets):
    """``table`` with its groups in the order one process writes them: those of ``first``
    (the file it resumed), then ``targets``, then any other; ratios sorted."""
    names = dict.fromkeys([*first, *targets, *table])
    return {name: dict(sorted(table[name].items())) for name in names if name in table}


class Shards:
    """This rank's share of a sensitivity analysis (only used when the world size is > 1)."""

    def __init__(self, sen_file, targets):
        self.rank, self.nranks = dist.world()
        dist.init()
        self.sen_file, self.targets = sen_file, list(targets)
        self.mine = [self.targets[i] for i in dist.shard(len(self.targets))]
        self.part = part_file(sen_file, self.rank, self.nranks) if sen_file is not None else None
        logger.info("sensitivity: rank %d of %d takes %d of %d groups; %s", self.rank, self.nranks,
                    len(self.mine), len(self.targets),
                    f"part file {self.part}" if self.part else "no sen_file: the tables are exchanged at the end")
        if self.rank == 0 and sen_file is not None:
            ours = {part_file(sen_file, r, self.nranks) for r in range(self.nranks)}
            stale = sorted(set(glob.glob(glob.escape(os.fspath(sen_file)) + ".rank*-of-*")) - ours)
            if stale:
                logger.warning("sensitivity: ignoring part files of a run with another number of ranks "
                               "(their points are computed again): %s", ", ".join(stale))

    def load_part(self, expected, overwrite):
        """``(table, meta)`` of this rank's part file (empty when absent or discarded)."""
        if self.part is None or not os.path.exists(self.part):
            return {}, {}
        table, meta = load_sensitivities(self.part, return_meta=True)
        if check_compatible(meta, expected, path=self.part, overwrite=overwrite):
            return {}, {}
        return table, meta

    def anything_to_do(self, todo):
        """False on every rank when no rank has a point to compute nor a part file to merge."""
        flags = dist.all_gather((len(todo), self.part is not None and os.path.exists(self.part)))
        return any(n or exists for n, exists in flags)

    def agree(self, base, method, metric, problem=None):
        """Check that every rank has the same baseline; raise ``problem`` (an exception one
        rank met checking its files) on every rank, so that none waits for the others."""
        gathered = dist.all_gather((base, method, None if problem is None else str(problem)))
        first = gathered[0][0]
        differ = [f"rank {r}: {b}" for r, (b, _, _) in enumerate(gathered)
                  if not np.isclose(b, first, rtol=1e-6, atol=1e-9)]
        if differ:
            raise InvalidParameterError(
                f"sensitivity: the unpruned {metric} differs between ranks (rank 0: {first}; {'; '.join(differ)}). "
                "Every rank must load the same weights and evaluate the same, full evaluation data.")
        if problem is not None:
            raise problem
        for r, (_, _, message) in enumerate(gathered):
            if message is not None:
                raise SensitivityFileError(f"sensitivity: rank {r} stopped: {message}")
        methods = {m for _, m, _ in gathered}
        if len(methods) > 1:
            logger.warning("sensitivity: the ranks evaluate with different methods (%s); the file records "
                           "rank 0's, %s", ", ".join(sorted(methods)), gathered[0][1])
        return gathered[0][1]

    def finish(self, done, points, meta):
        """The whole table, the same on every rank. ``done``: the points of ``sen_file`` this
        rank kept (rank 0's are merged), ``points``: what this rank measured (and its part file held)."""
        if self.sen_file is None:
            return ordered(merge_sensitive(dist.all_gather(points)), (), self.targets)
        save_sensitivities(self.part, points, meta)       # every rank leaves a current part file
        dist.barrier()
        error = None
        if self.rank == 0:
            parts = [part_file(self.sen_file, r, self.nranks) for r in range(self.nranks)]
            try:
                merged = merge_sensitive([done] + [p for p in parts if os.path.exists(p)])
                save_sensitivities(self.sen_file, ordered(merged, done, self.targets), meta)
                for p in parts:
                    if os.path.exists(p):
                        os.remove(p)
                logger.info("sensitivity: merged %d part files into %s", self.nranks, self.sen_file)
            except Exception as exc:              # tell the other ranks before failing
                dist.broadcast(f"{type(exc).__name__}: {exc}")
                raise
        error = dist.broadcast(error)
        if error is not None:
            raise SensitivityFileError(f"sensitivity: rank 0 could not merge the part files into "
                                       f"{self.sen_file}: {error}")
        return load_sensitivities(self.sen_file)
