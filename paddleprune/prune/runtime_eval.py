"""Evaluate pruned variants of a model on ONNX Runtime, exported once.

paddle2onnx writes every parameter as a ``Constant`` named after the Paddle parameter. For one
channel group, that group's parameters become graph inputs (their values stay as defaults) and
one session is built; every ratio of the group then feeds masked copies of them: the engine's
lazy masks (zeroed filters, norm scales, shifts and statistics, consumer input channels), which
equal physical removal. The other parameters stay constants, so ONNX Runtime still fuses and
pre-packs them (making every parameter an input was 7x slower on MobileNetV2). The tensors computed
before the group's first parameter is used are computed once per group and fed to the rest of the
graph, which alone runs for each ratio.

``onnx``, ``onnxruntime`` and ``paddleprune.deploy`` are imported when an evaluator is built.
"""
import os
import tempfile

import numpy as np
import paddle

RUNTIME_BACKENDS = ("onnxruntime",)

#: runtime outputs must equal dygraph's to this (relative to the largest output magnitude)
OUTPUT_TOLERANCE = 1e-4


class RuntimeUnavailable(Exception):
    """The runtime cannot evaluate this model; ``str(exc)`` says why."""


def cpu_threads():
    """Math threads: ``PADDLEPRUNE_THREADS``, else the user's ``OMP_NUM_THREADS``, else every core."""
    import paddleprune
    wanted = os.environ.get("PADDLEPRUNE_THREADS") or paddleprune.USER_OMP_NUM_THREADS
    return int(wanted) if wanted else (os.cpu_count() or 1)


def _as_tuple(batch):
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def _flatten(out):
    """Tensors of a (nested list/tuple) model output, in order."""
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if not isinstance(out, paddle.Tensor):
        raise RuntimeUnavailable(f"the model returns a {type(out).__name__}, not tensors")
    return [out]


def _pack(like, flat):
    """``flat`` (an iterator of tensors) in the structure of ``like``."""
    if isinstance(like, (list, tuple)):
        return type(like)(_pack(o, flat) for o in like)
    return next(flat)


def _input_specs(batches):
    """``[(name, shape, dtype)]`` of the model inputs; a dimension that varies is dynamic."""
    if not batches:
        raise RuntimeUnavailable("there are no evaluation batches")
    first = [np.asarray(a) for a in batches[0]]
    specs = []
    for i, a in enumerate(first):
        shape = [None] + list(a.shape[1:])
        for batch in batches[1:]:
            other = batch[i].shape
            if len(other) != a.ndim:
                raise RuntimeUnavailable(f"input {i} changes rank between batches")
            shape = [None if d is None or d != o else d for d, o in zip(shape, other)]
        specs.append((f"input_{i}", shape, a.dtype.name))
    return specs


class RuntimeEvaluator:
    """A model exported once to ONNX Runtime; runs the fixed ``batches`` with any of its
    parameters replaced.

    Parameters
    ----------
    model : paddle.nn.Layer
        Evaluated as it is when built (eval mode).
    batches : list
        Model inputs, one entry per batch (a tensor, or a tuple of tensors).
    params : dict
        ``{structural name: Parameter}`` of the parameters that may be replaced.
    threads : int, optional
        ONNX Runtime intra-op threads (default :func:`cpu_threads`).

    Raises
    ------
    RuntimeUnavailable
        onnxruntime / paddle2onnx missing, or the export or conversion failed.
    """

    backend = "onnxruntime"

    def __init__(self, model, batches, params, threads=None):
        self.model = model
        self.threads = threads or cpu_threads()
        self.feeds = [[t.numpy() for t in _as_tuple(b)] for b in batches]
        self.values = {n: np.array(p.value().get_tensor()) for n, p in params.items()}
        self._ort = self._import("onnxruntime")
        self._onnx = self._import("onnx")
        self._proto, self.input_names = self._export(model, params)
        self._constants = [n for n in self._proto.graph.node if n.op_type == "Constant"]
        self._nodes = [n for n in self._proto.graph.node if n.op_type != "Constant"]
        try:
            inferred = self._onnx.shape_inference.infer_shapes(self._proto).graph
            self.base = self._session(self._proto)
        except Exception as exc:  # onnx / onnxruntime raise their own types
            raise RuntimeUnavailable(f"onnxruntime cannot load the export: {type(exc).__name__}: {exc}") from exc
        self._infos = {v.name: v for v in list(inferred.value_info) + list(inferred.input) + list(inferred.output)}
        self._group_key, self._group = None, None
        self.base_inputs = [i.name for i in self.base.get_inputs()]

    @staticmethod
    def _import(module):
        try:
            return __import__(module)
        except ImportError as exc:
            raise RuntimeUnavailable(f"{module} is not installed ({exc}; pip install paddle2onnx onnxruntime)") \
                from exc

    def _export(self, model, params):
        """The ONNX model and ``{structural name: constant name}`` of the parameters found in it
        with the same values."""
        from paddleprune.deploy.export import convert_to_onnx_bytes, export_inference_model
        specs = _input_specs(self.feeds)
        with tempfile.TemporaryDirectory(prefix="paddleprune-sens-") as tmp:
            try:
                export_inference_model(model, os.path.join(tmp, "m"), inputs=specs)
                data = convert_to_onnx_bytes(os.path.join(tmp, "m", "model.json"),
                                             os.path.join(tmp, "m", "model.pdiparams"), owner="sensitivity")
            except Exception as exc:  # paddle and paddle2onnx raise many types
                lines = str(exc).strip().splitlines()
                raise RuntimeUnavailable(f"export failed: {type(exc).__name__}: {lines[-1] if lines else ''}") \
                    from exc
        proto = self._onnx.load_from_string(data)
        from onnx import numpy_helper
        constants = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant" and len(n.output) == 1}
        names = {}
        for name, p in params.items():
            node = constants.get(p.name)
            if node is None or node.attribute[0].name != "value":
                continue
            if np.array_equal(numpy_helper.to_array(node.attribute[0].t), self.values[name]):
                names[name] = p.name
        return proto, names

    def _session(self, proto):
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def _graph(self, nodes, inputs, outputs, as_inputs=()):
        """A copy of the model with the computing ``nodes`` (every ``Constant`` is kept), graph
        ``inputs`` / ``outputs`` (value infos) and the constants ``as_inputs`` turned into inputs."""
        from onnx import helper, numpy_helper
        proto = self._onnx.ModelProto()
        proto.CopyFrom(self._proto)
        graph = proto.graph
        del graph.node[:], graph.input[:], graph.output[:], graph.value_info[:]
        graph.input.extend(inputs)
        graph.output.extend(outputs)
        for node in self._constants:
            if node.output[0] in as_inputs:
                tensor = numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t), node.output[0])
                graph.initializer.append(tensor)
                graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
            else:
                graph.node.append(node)
        graph.node.extend(nodes)
        return proto

    def _build(self, names):
        """``(prefix, suffix)`` sessions for the parameters ``names`` (structural) as graph inputs:
        ``prefix`` (None when nothing comes before them) runs the nodes before the first one using
        them and returns the tensors the other nodes need; ``suffix`` runs the rest."""
        graph = self._proto.graph
        wanted = {self.input_names[n] for n in names}
        nodes = self._nodes
        first = next((i for i, n in enumerate(nodes) if wanted & set(n.input)), 0)
        constants = {n.output[0] for n in self._constants}
        needed = {t for n in nodes[first:] for t in n.input} | {o.name for o in graph.output}
        cut = [t for n in nodes[:first] for t in n.output if t in needed and t not in constants]
        nested = any(a.type in (a.GRAPH, a.GRAPHS) for n in nodes for a in n.attribute)  # implicit inputs
        if not cut or nested or any(t not in self._infos for t in cut):
            return None, self._session(self._graph(nodes, graph.input, graph.output, wanted))
        used = [i for i in graph.input if i.name in needed]
        infos = [self._infos[t] for t in cut]
        prefix = self._session(self._graph(nodes[:first], graph.input, infos))
        suffix = self._session(self._graph(nodes[first:], used + infos, graph.output, wanted))
        return prefix, suffix

    def covers(self, names):
        """Whether every parameter in ``names`` can be replaced on the runtime."""
        return all(n in self.input_names for n in names)

    def missing(self, names):
        return [n for n in names if n not in self.input_names]

    def raw_outputs(self, overrides=None):
        """Per batch, the list of output arrays, with ``overrides`` ``{structural name: array}``
        in place of those parameters' values."""
        overrides = overrides or {}
        if not overrides:
            for feeds in self.feeds:
                yield self.base.run(None, dict(zip(self.base_inputs, feeds)))
            return
        key = frozenset(overrides)
        if key != self._group_key:   # one group at a time: its ratios share the prefix and the session
            self._group_key, self._group = None, None
            prefix, suffix = self._build(sorted(key))
            stored = []
            for feeds in self.feeds:
                named = dict(zip(self.base_inputs, feeds))
                if prefix is not None:
                    named.update(zip([o.name for o in prefix.get_outputs()], prefix.run(None, named)))
                stored.append({i.name: named[i.name] for i in suffix.get_inputs() if i.name in named})
            self._group_key, self._group = key, (suffix, stored)
        suffix, stored = self._group
        extra = {self.input_names[n]: np.ascontiguousarray(a, dtype=self.values[n].dtype)
                 for n, a in overrides.items()}
        for named in stored:
            yield suffix.run(None, {**named, **extra})

    def outputs(self, like, overrides=None):
        """:meth:`raw_outputs` as paddle tensors in the structure of ``like`` (a dygraph output)."""
        for arrays in self.raw_outputs(overrides):
            yield _pack(like, iter([paddle.to_tensor(a) for a in arrays]))

    @staticmethod
    def difference(dygraph_out, arrays):
        """Largest |runtime - dygraph| relative to max(1, largest |dygraph|); inf on a shape mismatch."""
        flat = _flatten(dygraph_out)
        if len(flat) != len(arrays):
            return float("inf")
        worst = 0.0
        for t, a in zip(flat, arrays):
            ref = t.numpy()
            if ref.shape != a.shape:
                return float("inf")
            if ref.size:
                scale = max(1.0, float(np.abs(ref).max()))
                worst = max(worst, float(np.abs(ref.astype("float64") - a).max()) / scale)
        return worst
