"""Trace a dygraph ``paddle.nn.Layer`` to a PIR program and map parameter names.

The program is only read (op types, attributes, shapes, def-use edges); the
model is left exactly as it was: same ``forward``, same training flag, same
parameter values.
"""
import contextlib
import difflib
import logging
from dataclasses import dataclass, field

import numpy as np
import paddle
from paddle.static import InputSpec

from paddleprune.errors import InvalidParameterError, UnknownParameterNameError

logger = logging.getLogger(__name__)


def normalize_inputs(inputs, owner="FilterPruner"):
    """Turn ``inputs`` (a shape, a list of shapes, a tensor or a list of tensors)
    into a list of ``(shape, dtype)`` pairs."""
    def one(x):
        if isinstance(x, (paddle.Tensor, np.ndarray)):
            return [int(d) for d in x.shape], str(x.dtype).replace("paddle.", "")
        if isinstance(x, InputSpec):
            return [int(d) for d in x.shape], str(x.dtype).replace("paddle.", "")
        if isinstance(x, (list, tuple)) and x and all(isinstance(d, (int, np.integer)) for d in x):
            if any(int(d) <= 0 for d in x):
                raise InvalidParameterError(
                    f"{owner}: input shape must have positive sizes (batch included); got {list(x)}.")
            return [int(d) for d in x], "float32"
        raise InvalidParameterError(
            f"{owner}: 'inputs' must be a shape such as [1, 3, 224, 224], a list of shapes, "
            f"or tensors; got {x!r}.")

    if isinstance(inputs, (list, tuple)) and inputs and all(
            isinstance(x, (list, tuple, paddle.Tensor, np.ndarray, InputSpec)) for x in inputs):
        return [one(x) for x in inputs]
    return [one(inputs)]


@dataclass
class TracedModel:
    """A traced model: its PIR program plus the name maps.

    ``struct_of`` maps Paddle parameter names (``conv2d_0.w_0``) to structural
    names (``features.0.0.weight``); ``params`` maps structural names to the
    ``Parameter`` objects; ``owner`` maps structural names to the owning layer.
    """
    program: object
    params: dict
    struct_of: dict
    owner: dict
    inputs: list
    layers: dict = field(default_factory=dict)

    @property
    def ops(self):
        return list(self.program.global_block().ops)


@contextlib.contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode; afterwards give every sublayer (and the dygraph
    tracer) back its own train/eval flag, so a frozen BatchNorm stays frozen."""
    flags = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    tracer = paddle.base.framework._dygraph_tracer()
    tracer_mode = getattr(tracer, "_train_mode", None)
    model.eval()
    try:
        yield model
    finally:
        for layer, training in flags:
            layer.training = training
        if tracer_mode is not None:
            tracer._train_mode = tracer_mode


@contextlib.contextmanager
def preserved_layer_state(model):
    """:func:`eval_mode`, and afterwards the instance's ``forward`` attribute is what it was
    (``paddle.jit.to_static`` may replace it on the instance)."""
    had_forward = "forward" in model.__dict__
    saved_forward = model.__dict__.get("forward")
    try:
        with eval_mode(model):
            yield model
    finally:
        if had_forward:
            model.__dict__["forward"] = saved_forward
        else:
            model.__dict__.pop("forward", None)


def trace(model, inputs, owner="FilterPruner"):
    """Trace ``model`` for the given input shapes; returns a :class:`TracedModel`."""
    if not isinstance(model, paddle.nn.Layer):
        raise InvalidParameterError(f"{owner}: 'model' must be a paddle.nn.Layer; got {type(model).__name__}.")
    specs = [InputSpec(shape, dtype, name=f"x{i}") for i, (shape, dtype) in enumerate(normalize_inputs(inputs, owner))]
    try:
        with preserved_layer_state(model):
            static = paddle.jit.to_static(model, input_spec=specs, full_graph=True)
            program = static.forward.concrete_program.main_program
    except Exception as exc:  # paddle raises many types; report them as one clear error
        shapes = [s.shape for s in specs]
        msg = str(exc).strip().splitlines()
        detail = msg[-1] if msg else type(exc).__name__
        raise InvalidParameterError(
            f"{owner}: could not trace {type(model).__name__} with input shape(s) {shapes}: {detail}") from exc

    params = dict(model.named_parameters())
    struct_of = {p.name: n for n, p in params.items()}
    layers = dict(model.named_sublayers(include_self=True))
    owner_of = {}
    for name in params:
        prefix, _, _ = name.rpartition(".")
        owner_of[name] = layers.get(prefix, model)
    return TracedModel(program=program, params=params, struct_of=struct_of, owner=owner_of,
                       inputs=[s.shape for s in specs], layers=layers)


def resolve_name(traced, name, owner="FilterPruner"):
    """Return the structural name for ``name`` (structural or Paddle name)."""
    if name in traced.params:
        return name
    if name in traced.struct_of:
        return traced.struct_of[name]
    known = list(traced.params) + list(traced.struct_of)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownParameterNameError(
        f"{owner}: the model has no parameter named {name!r}.{hint} "
        f"(Names may be structural, e.g. {next(iter(traced.params), '')!r}, or Paddle names such as "
        f"{next(iter(traced.struct_of), '')!r}.)")


def value_shape(value):
    """Static shape of a PIR value as a list, or None for non-dense values."""
    try:
        return [int(d) for d in value.shape]
    except Exception:  # vector values (builtin.combine) have no shape
        return None


def defining_op(value):
    if not value.initialized():
        return None
    return value.get_defining_op()


def constant_value(value):
    """The value of a ``pd_op.full`` / ``pd_op.full_int_array`` operand, else None."""
    op = defining_op(value)
    if op is None or op.name() not in ("pd_op.full", "pd_op.full_int_array"):
        return None
    return op.attrs().get("value")
