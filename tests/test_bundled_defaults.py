"""Every bundled 'DEFAULT' sensitivities file names only prunable parameters of today's model definition,
and its manifest entry says honestly what produced it."""
import json
import os

import pytest

from paddleprune.prune import L1NormFilterPruner, load_sensitivities
from paddleprune.tasks import get_task_class
from paddleprune.tasks.pruning import BUILTIN_DIR, read_manifest

MANIFEST = read_manifest()
#: the classification models issue #12 asks a DEFAULT for, beside the pipeline's three models
REQUIRED = {"MobileNetV1", "MobileNetV2", "ResNet18", "ResNet50", "YOLOv3_MobileNetV1", "UNet"}


def test_every_model_has_a_bundled_file():
    assert REQUIRED <= set(MANIFEST)
    for key, entry in MANIFEST.items():
        assert os.path.isfile(os.path.join(BUILTIN_DIR, entry["file"])), key
        for field in ("metric", "baseline", "ratios", "dataset", "weights", "model_params", "input_shape", "command",
                      "date"):
            assert entry.get(field) not in (None, ""), (key, field)
        assert entry["command"].startswith("paddleprune build-default"), key


@pytest.mark.parametrize("key", sorted(MANIFEST))
def test_bundled_file_names_prunable_parameters_of_the_model(key):
    entry = MANIFEST[key]
    table, meta = load_sensitivities(os.path.join(BUILTIN_DIR, entry["file"]), return_meta=True)
    assert meta["metric"] == entry["metric"] and meta["baseline"] == pytest.approx(entry["baseline"])
    task = get_task_class(key.split("_")[0])(num_classes=meta.get("num_classes", 10), **entry["model_params"])
    assert task.sensitivity_key() == key
    net = task.build_net()
    pruner = L1NormFilterPruner(net, entry["input_shape"])
    roots = {g.root for g in pruner.prunable_groups()}
    assert table and set(table) <= roots, sorted(set(table) - roots)[:5]
    assert len(table) >= 0.8 * len(roots), f"{key}: {len(table)} of {len(roots)} prunable groups measured"
    for name, curve in table.items():
        assert sorted(curve) == sorted(entry["ratios"]), name
