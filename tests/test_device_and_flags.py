"""Device-safe pruning (tensors are written to their own place) and per-sublayer train/eval flags."""
import numpy as np
import paddle
import pytest
from paddle.base import core

import nets
from static_nets import legacy_static, seed_residual
from paddleprune.prune import L1NormFilterPruner, Pruner, apply_records, restore_scope
from paddleprune.prune.graph import eval_mode

SHAPE = [1, 3, 16, 16]
TARGETS = ["a.0.weight", "c.0.weight"]


def flags(model):
    return {name: layer.training for name, layer in model.named_sublayers(include_self=True)}


def eval_data(model, n=2):
    batches = [paddle.uniform([4, 3, 16, 16], min=-1, max=1) for _ in range(n)]

    def score(outputs):
        return float(np.mean([o.mean().item() for o in outputs]))

    def eval_func():
        with paddle.no_grad():
            return score([model(b) for b in batches])
    return batches, score, eval_func


def odd_one_out(top_training):
    """TwoBranchConcat with every layer in ``top_training`` mode except the BN ``b.1``."""
    model = nets.TwoBranchConcat()
    model.train(top_training)
    model.b[1].training = not top_training
    return model


@pytest.mark.parametrize("top_training", [True, False], ids=["train_with_frozen_bn", "eval_with_training_bn"])
def test_flags_survive_tracing_sensitivity_and_pruning(top_training):
    model = odd_one_out(top_training)
    expected = flags(model)
    assert expected["b.1"] is not top_training and expected["a.1"] is top_training
    pruner = L1NormFilterPruner(model, SHAPE)
    assert flags(model) == expected
    batches, score, eval_func = eval_data(model)
    pruner.sensitive(eval_batches=batches, score_fn=score, target_vars=TARGETS, ratios=[0.5])
    assert flags(model) == expected
    pruner.sensitive(eval_func=eval_func, target_vars=TARGETS, ratios=[0.5], method="naive")
    assert flags(model) == expected
    pruner.prune_vars({"a.0.weight": 0.5})
    assert list(model.a[1]._mean.shape) == [4]
    assert len(pruner.groups) > 0          # traces the pruned model again
    assert flags(model) == expected
    pruner.restore()
    assert flags(model) == expected


def test_eval_mode_restores_flags_and_tracer_on_error():
    model = odd_one_out(True)
    expected = flags(model)
    tracer = paddle.base.framework._dygraph_tracer()
    mode = tracer._train_mode
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            assert not any(flags(model).values())
            raise RuntimeError("boom")
    assert flags(model) == expected and tracer._train_mode == mode


# -- devices ------------------------------------------------------------------------------
def places(model, opt=None):
    out = {n: str(p.place) for n, p in model.named_parameters()}
    out.update({"buffer:" + n: str(b.place) for n, b in model.named_buffers()})
    for store in (getattr(opt, "_accumulators", None) or {}).values():
        out.update({"acc:" + k: str(v.place) for k, v in store.items()})
    return out


def trained(model):
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=model.parameters())
    model(paddle.rand([2, 3, 16, 16])).square().sum().backward()
    opt.step()
    opt.clear_grad()
    return opt


@pytest.fixture
def spy_writes(monkeypatch):
    """Record ``(own place, place given)`` for every ``DenseTensor.set(array, place)``."""
    calls = []
    real_set = core.DenseTensor.set

    def spy(self, array, place, *args, **kwargs):
        calls.append((self._place() if self._is_initialized() else None, place))
        return real_set(self, array, paddle.CPUPlace() if isinstance(place, FakeCUDAPlace) else place,
                        *args, **kwargs)
    monkeypatch.setattr(core.DenseTensor, "set", spy)
    return calls


class FakeGPUPlace:
    """A generic ``paddle.Place`` as a GPU build reports it (``Place(gpu:1)``)."""

    def __getattr__(self, name):
        if name.startswith("is_"):
            return lambda: name == "is_gpu_place"
        raise AttributeError(name)

    def gpu_device_id(self):
        return 1


class FakeCUDAPlace:
    def __init__(self, device_id):
        self.device_id = device_id


@pytest.fixture
def on_fake_gpu(monkeypatch, spy_writes):
    """Every DenseTensor reports gpu:1; a write there is recorded, then done on the CPU."""
    def go():
        spy_writes.clear()
        monkeypatch.setattr(core.DenseTensor, "_place", lambda self: FakeGPUPlace())
        monkeypatch.setattr(paddle, "CUDAPlace", FakeCUDAPlace)
    return go


def test_writes_use_each_tensors_own_place(spy_writes):
    model = nets.TwoBranchConcat()
    opt = trained(model)
    before = places(model, opt)
    pruner = L1NormFilterPruner(model, SHAPE, opt=opt)
    batches, score, _ = eval_data(model)
    pruner.sensitive(eval_batches=batches, score_fn=score, target_vars=TARGETS, ratios=[0.5])
    pruner.prune_vars({"a.0.weight": 0.5, "c.0.weight": 0.25})
    assert places(model, opt) == before
    pruner.restore()
    assert places(model, opt) == before and spy_writes
    for own, given in spy_writes:
        assert isinstance(given, paddle.CPUPlace)      # a concrete place of the tensor's own kind
        place = core.Place()
        place.set_place(given)
        assert place._equals(own)


def test_pruning_writes_to_a_gpu_tensors_place(on_fake_gpu, spy_writes):
    model = nets.TwoBranchConcat()
    opt = trained(model)
    pruner = L1NormFilterPruner(model, SHAPE, opt=opt)
    batches, score, _ = eval_data(model)
    on_fake_gpu()
    pruner.sensitive(eval_batches=batches, score_fn=score, target_vars=TARGETS, ratios=[0.5])   # lazy + restore
    plan = pruner.prune_vars({"a.0.weight": 0.5})
    pruner.restore()
    pruner.prune_vars({"a.0.weight": 0.5})
    written = [given for _, given in spy_writes]
    assert len(written) > 20
    assert all(isinstance(g, FakeCUDAPlace) and g.device_id == 1 for g in written), \
        {type(g).__name__ for g in written}
    assert plan.records and list(model.a[1]._variance.shape) == [4]


def test_replayed_and_loaded_model_keeps_places():
    model = nets.TwoBranchConcat()
    plan = L1NormFilterPruner(model, SHAPE).prune_vars({"b.0.weight": 0.5})
    fresh = nets.TwoBranchConcat()
    before = places(fresh)
    apply_records(fresh, SHAPE, plan.records)
    fresh.set_state_dict(model.state_dict())
    assert places(fresh) == before
    x = paddle.rand(SHAPE)
    model.eval()
    fresh.eval()
    np.testing.assert_allclose(fresh(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)


def test_static_pruner_defaults_to_each_tensors_own_place(on_fake_gpu, spy_writes):
    with legacy_static():
        b = seed_residual("momentum")
        b.run(b.main, [b.loss.name])
        on_fake_gpu()
        _, backup, _ = Pruner().prune(b.main, b.scope, ["conv4_weights"], [0.5], param_backup=True)
        restore_scope(b.scope, backup)
    assert paddle.in_dynamic_mode()
    written = [given for _, given in spy_writes]
    assert len(written) == 2 * len(backup) and all(isinstance(g, FakeCUDAPlace) for g in written)
    assert b.value("conv4_weights").shape == (8, 8, 3, 3)


def test_task_inference_keeps_sublayer_flags():
    """run_export_layer (predict, Predictor checks) gives each sublayer its own flag back."""
    from paddleprune import cls
    task = cls.MobileNetV2(num_classes=4, scale=0.25, small_input=True)
    task.net = task.build_net()
    task.net.train()
    frozen = task.net.features[1]
    frozen.eval()
    task.run_export_layer([np.random.rand(1, 3, 32, 32).astype("float32")])
    in_frozen = {id(layer) for layer in frozen.sublayers(include_self=True)}
    for layer in task.net.sublayers(include_self=True):
        assert layer.training == (id(layer) not in in_frozen)
