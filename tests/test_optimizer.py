"""An optimizer created before pruning: its state is cut with the same plan."""
import copy

import numpy as np
import paddle
import pytest

import nets
from paddleprune.prune import FilterPruner


def train_step(model, opt, x):
    loss = model(x).square().sum()       # large gradients, so a stale state would show
    loss.backward()
    opt.step()
    opt.clear_grad()


@pytest.mark.parametrize("make_opt", [
    lambda ps: paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=ps),
    lambda ps: paddle.optimizer.Adam(learning_rate=0.01, parameters=ps),
], ids=["momentum", "adam"])
def test_next_step_equals_fresh_optimizer_with_pruned_state(make_opt):
    x = paddle.rand([2, 3, 16, 16])
    model = nets.ResidualChain()
    opt = make_opt(model.parameters())
    train_step(model, opt, x)
    train_step(model, opt, x)
    twin = copy.deepcopy(model)
    state = {k: v.numpy().copy() for k, v in opt.state_dict().items() if hasattr(v, "numpy")}

    plan = FilterPruner(model, [1, 3, 16, 16], opt=opt).prune_vars({"conv3.0.weight": 0.5})
    train_step(model, opt, x)

    # reference: the same pruning on a twin, and a fresh optimizer loaded with the sliced state
    FilterPruner(twin, [1, 3, 16, 16]).prune_vars({"conv3.0.weight": 0.5})
    fresh = make_opt(twin.parameters())
    name_map = {p.name: n for n, p in model.named_parameters()}
    twin_params = dict(twin.named_parameters())
    sliced = {}
    for key, arr in state.items():
        pname = next((p for p in name_map if key.startswith(p + "_")), None)
        if pname is None:
            sliced[key] = arr
            continue
        struct = name_map[pname]
        if struct in plan.masks and list(arr.shape) == list(plan.masks[struct][0].mask.shape) + list(arr.shape[1:]) \
                and arr.size > 1:
            for m in plan.masks[struct]:
                arr = np.take(arr, np.flatnonzero(m.mask), axis=m.dims[0])
        sliced[key.replace(pname, twin_params[struct].name)] = arr
    fresh.set_state_dict({k: paddle.to_tensor(v) for k, v in sliced.items()})
    train_step(twin, fresh, x)
    for (n, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-7, err_msg=n)


def test_optimizer_state_of_another_shape_is_refused():
    model = nets.ResidualChain()
    opt = paddle.optimizer.Momentum(learning_rate=0.1, parameters=model.parameters())
    train_step(model, opt, paddle.rand([1, 3, 16, 16]))
    p = model.conv3[0].weight
    opt._accumulators["velocity"][p.name] = paddle.zeros([3, 3])
    with pytest.raises(ValueError, match="optimizer state .* has shape \\[3, 3\\].*rebuild the optimizer"):
        FilterPruner(model, [1, 3, 16, 16], opt=opt).prune_vars({"conv3.0.weight": 0.5})
