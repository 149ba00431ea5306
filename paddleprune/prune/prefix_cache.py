"""Reuse the activations computed before a group's first layer.

When the evaluation data are fixed, every leaf layer that runs before the
first layer owning a pruned parameter produces the same output for every
pruned variant. A recording pass stores those outputs per batch; while a
group is evaluated, those layers return their stored output instead of
computing it, so only the suffix of the network is recomputed.
"""
import contextlib
import logging

import paddle

logger = logging.getLogger(__name__)


def _clone(out):
    """Copy outputs: later in-place ops (``x += y``) must not change what is stored."""
    if isinstance(out, paddle.Tensor):
        return out.clone()
    if isinstance(out, (list, tuple)):
        return type(out)(_clone(o) for o in out)
    return out


def _nbytes(out):
    if isinstance(out, paddle.Tensor):
        return int(out.numel().item()) * out.element_size()
    if isinstance(out, (list, tuple)):
        return sum(_nbytes(o) for o in out)
    return 0


class PrefixCache:
    """Outputs of the leaf layers of ``model`` for each batch, in execution order.

    Parameters
    ----------
    model : paddle.nn.Layer
    batches : list
        Model inputs, one entry per batch (a tensor, or a tuple of tensors).
    budget_mb : float
        Stop storing outputs once they take this much memory; later layers
        are then always recomputed (still correct, just less reuse).
    """

    def __init__(self, model, batches, budget_mb=1024):
        self.model = model
        self.batches = list(batches)
        self.budget = budget_mb * 2 ** 20
        self.leaves = [l for _, l in model.named_sublayers() if not l.sublayers()]
        self.order = []          # [(layer, call index of that layer)] in execution order (batch 0)
        self.outputs = []        # per batch: list of outputs aligned with self.order (prefix only)
        self.cached = 0          # number of positions cached for every batch

    def _call(self, batch):
        return self.model(*batch) if isinstance(batch, (tuple, list)) else self.model(batch)

    def record(self):
        """Run every batch once, storing leaf outputs; returns the list of model outputs."""
        return list(self.iter_record())

    def iter_record(self):
        """:meth:`record` as a generator of each batch's model outputs, so a caller can score
        them batch by batch without keeping them all; the cache is complete once it is exhausted.

        Each batch gets an equal share of the budget and stores a contiguous prefix
        of its layer calls, so all batches can reuse the same number of calls.
        """
        share = self.budget / max(1, len(self.batches))
        self.order, self.outputs, self.cached = [], [], 0
        for b, batch in enumerate(self.batches):
            seen, stored, counts, state = [], [], {}, {"used": 0, "full": False}

            def hook(layer, inputs, output, seen=seen, stored=stored, counts=counts, state=state):
                k = counts.get(id(layer), 0)
                counts[id(layer)] = k + 1
                seen.append((layer, k))
                size = _nbytes(output)
                if not state["full"] and state["used"] + size <= share:
                    stored.append(_clone(output))
                    state["used"] += size
                else:                   # once one output is not stored, none after it is
                    state["full"] = True

            hooked = self.leaves if self.order is not None else []
            handles = [l.register_forward_post_hook(hook) for l in hooked]
            try:
                with paddle.no_grad():
                    result = self._call(batch)
            finally:
                for h in handles:
                    h.remove()
            if b == 0:
                self.order = seen
            elif self.order is not None and [(id(l), k) for l, k in seen] != [(id(l), k) for l, k in self.order]:
                logger.info("the model runs different layers for different batches; no activation reuse")
                self.order, self.outputs = None, []
            if self.order is not None:
                self.outputs.append(stored)
            yield result
        if self.order is None:
            self.order, self.cached = [], 0
            return
        self.cached = min((len(s) for s in self.outputs), default=0)
        self.outputs = [s[:self.cached] for s in self.outputs]
        if self.cached < len(self.order):
            logger.info("activation cache full at %d of %d layer calls (budget %.0f MB)",
                        self.cached, len(self.order), self.budget / 2 ** 20)

    def first_position(self, owners):
        """Execution position of the first call of any layer in ``owners``."""
        ids = {id(o) for o in owners}
        if any(o.sublayers() for o in owners):      # a container owns a parameter: no safe prefix
            return 0
        for i, (layer, _) in enumerate(self.order):
            if id(layer) in ids:
                return i
        return 0

    @contextlib.contextmanager
    def reuse_before(self, position, batch_index):
        """Within the block, the layer calls before ``position`` return stored outputs."""
        position = min(position, self.cached)
        plan = {}
        for i in range(position):
            layer, k = self.order[i]
            plan.setdefault(id(layer), (layer, {}))[1][k] = self.outputs[batch_index][i]
        patched = []
        for layer, calls in plan.values():
            original = layer.forward
            counter = [0]

            def forward(*args, _calls=calls, _orig=original, _counter=counter, **kwargs):
                k = _counter[0]
                _counter[0] += 1
                return _clone(_calls[k]) if k in _calls else _orig(*args, **kwargs)

            had = "forward" in layer.__dict__
            patched.append((layer, had, layer.__dict__.get("forward")))
            layer.forward = forward
        try:
            yield
        finally:
            for layer, had, old in patched:
                if had:
                    layer.__dict__["forward"] = old
                else:
                    layer.__dict__.pop("forward", None)

    def run(self, position):
        """Model outputs for every batch, reusing the stored prefix before ``position``."""
        return list(self.iter_run(position))

    def iter_run(self, position):
        """:meth:`run` as a generator: one batch's model outputs at a time."""
        for b, batch in enumerate(self.batches):
            with self.reuse_before(position, b), paddle.no_grad():
                result = self._call(batch)
            yield result
