"""The activation cache behind fast sensitivities: what it replays must be what the layers produce."""
import numpy as np
import paddle
from paddle import nn

from paddleprune.prune.prefix_cache import PrefixCache


def _net():
    paddle.seed(0)
    # per sample of 1x4x4: 64, 512, 512, 32, 32, 8 bytes of output, layer by layer
    return nn.Sequential(nn.Conv2D(1, 1, 1), nn.Conv2D(1, 8, 1), nn.Conv2D(8, 8, 1), nn.AdaptiveAvgPool2D(1),
                         nn.Flatten(), nn.Linear(8, 2))


def test_full_budget_keeps_a_contiguous_prefix_in_every_batch():
    net = _net()
    net.eval()
    batches = [paddle.rand([1, 1, 4, 4]) for _ in range(3)]
    # 700 bytes = 233 per batch: the first output (64 bytes) fits, the next (512) does not, and the
    # pooled output after it (32) must not be stored in the second slot although it would fit
    cache = PrefixCache(net, batches, budget_mb=700 / 2 ** 20)
    expected = cache.record()
    assert [len(s) for s in cache.outputs] == [1, 1, 1] and cache.cached == 1
    assert [tuple(s[0].shape) for s in cache.outputs] == [(1, 1, 4, 4)] * 3
    for position in range(len(cache.order) + 1):
        for got, want in zip(cache.run(position), expected):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


def test_replayed_prefix_equals_recomputation():
    net = _net()
    net.eval()
    batches = [paddle.rand([2, 1, 4, 4]) for _ in range(2)]
    cache = PrefixCache(net, batches)
    expected = cache.record()
    assert cache.cached == len(cache.order) == 6
    with paddle.no_grad():
        net[2].weight.set_value(paddle.zeros_like(net[2].weight))   # prune-like change after layer 2's inputs
        fresh = [net(b) for b in batches]
    replayed = cache.run(2)                                         # layers 0 and 1 replayed, 2.. recomputed
    for got, want, old in zip(replayed, fresh, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
        assert not np.allclose(got.numpy(), old.numpy())
