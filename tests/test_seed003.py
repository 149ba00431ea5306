"""Seed 003's custom pruners, as written there (only the import path changed)."""
import numpy as np
import paddle
import pytest
from paddle.vision.models import mobilenet_v1

from paddleprune.prune import FilterPruner


class L2NormFilterPruner(FilterPruner):

    def __init__(self, model, input_shape, sen_file=None):
        super(L2NormFilterPruner, self).__init__(
            model, input_shape, sen_file=sen_file)

    def cal_mask(self, var_name, pruned_ratio, group):
        value = group[var_name]['value']
        pruned_dims = group[var_name]['pruned_dims']
        reduce_dims = [
                    i for i in range(len(value.shape)) if i not in pruned_dims
                ]

        # scores = np.mean(np.abs(value), axis=tuple(reduce_dims))
        scores = np.sqrt(np.sum(np.square(value), axis=tuple(reduce_dims)))
        sorted_idx = scores.argsort()
        pruned_num = int(round(len(sorted_idx) * pruned_ratio))
        pruned_idx = sorted_idx[:pruned_num]
        mask_shape = [value.shape[i] for i in pruned_dims]
        mask = np.ones(mask_shape, dtype="int32")
        mask[pruned_idx] = 0
        return mask


class FPGMFilterPruner(FilterPruner):

    def __init__(self, model, input_shape, sen_file=None):
        super(FPGMFilterPruner, self).__init__(
            model, input_shape, sen_file=sen_file)

    def cal_mask(self, var_name, pruned_ratio, group):
        value = group[var_name]['value']
        pruned_dims = group[var_name]['pruned_dims']
        assert(pruned_dims == [0])

        dist_sum_list = []
        for out_i in range(value.shape[0]):
            dist_sum = self.get_distance_sum(value, out_i)
            dist_sum_list.append(dist_sum)
        scores = np.array(dist_sum_list)

        sorted_idx = scores.argsort()
        pruned_num = int(round(len(sorted_idx) * pruned_ratio))
        pruned_idx = sorted_idx[:pruned_num]
        mask_shape = [value.shape[i] for i in pruned_dims]
        mask = np.ones(mask_shape, dtype="int32")
        mask[pruned_idx] = 0
        return mask

    def get_distance_sum(self, value, out_idx):
        w = value.view()
        w.shape = value.shape[0], np.product(value.shape[1:])
        selected_filter = np.tile(w[out_idx], (w.shape[0], 1))
        x = w - selected_filter
        x = np.sqrt(np.sum(x * x, -1))
        return x.sum()


@pytest.fixture
def numpy_product(monkeypatch):
    # seed 003 uses np.product, which NumPy 2.0 removed; give it back for the test only
    monkeypatch.setattr(np, "product", np.prod, raising=False)


@pytest.mark.parametrize("pruner_cls", [L2NormFilterPruner, FPGMFilterPruner])
def test_seed_example_runs_as_written(pruner_cls, numpy_product):
    with paddle.utils.unique_name.guard():      # a fresh process names its first conv conv2d_0
        net = mobilenet_v1(pretrained=False)
    before = {n: list(p.shape) for n, p in net.named_parameters()}
    pruner = pruner_cls(net, [1, 3, 32, 32])
    plan = pruner.prune_var("conv2d_0.w_0", 0, 0.5)
    text = str(plan)
    assert "conv1.0.weight" in text and "pruned FLOPs" in text
    assert list(net.conv1[0].weight.shape) == [16, 3, 3, 3]
    assert list(net.conv2_1._depthwise_conv[0].weight.shape) == [16, 1, 3, 3]
    assert net(paddle.rand([1, 3, 32, 32])).shape == [1, 1000]
    pruner.restore()
    assert {n: list(p.shape) for n, p in net.named_parameters()} == before
