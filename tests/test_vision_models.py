"""Every paddle.vision classification constructor: prune uniformly and randomly, check (a)-(d)."""
import pytest
import paddle.vision.models as M

from engine_checks import check_pruned_model, random_ratios, uniform

# constructor -> (kwargs, input size); fixed-size classifiers need 224
MODELS = {
    "resnet18": ({}, 32), "resnet50": ({}, 32), "wide_resnet50_2": ({}, 32), "resnext50_32x4d": ({}, 32),
    "vgg11": ({"batch_norm": True}, 32), "mobilenet_v1": ({}, 32), "mobilenet_v2": ({}, 32),
    "mobilenet_v3_small": ({}, 32), "mobilenet_v3_large": ({}, 32), "shufflenet_v2_x1_0": ({}, 32),
    "shufflenet_v2_x0_5": ({}, 32),
    "squeezenet1_1": ({}, 64), "densenet121": ({}, 32), "googlenet": ({}, 224), "alexnet": ({}, 224),
    "inception_v3": ({}, 96),
}


def build(name):
    kwargs, size = MODELS[name]
    return getattr(M, name)(num_classes=10, **kwargs), [1, 3, size, size]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_uniform_half(name):
    model, shape = build(name)
    pruner, plan = check_pruned_model(model, shape, uniform(0.5))
    assert len(pruner.prunable_groups()) >= 2


@pytest.mark.parametrize("name", sorted(MODELS))
def test_random_ratios(name):
    model, shape = build(name)
    check_pruned_model(model, shape, random_ratios(seed=sum(map(ord, name))))
