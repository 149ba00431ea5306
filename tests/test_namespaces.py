"""PaddleX scripts use the sub-packages as attributes after a bare ``import paddleprune as pdx``."""
import subprocess
import sys

import pytest

ENTRY_POINTS = ["pdx.datasets.ImageNet", "pdx.datasets.VOCDetection", "pdx.datasets.demo.detection",
                "pdx.cls.MobileNetV2", "pdx.cls.transforms.Resize", "pdx.det.YOLOv3", "pdx.det.transforms.MixupImage",
                "pdx.datasets.SegDataset", "pdx.datasets.demo.segmentation", "pdx.seg.UNet",
                "pdx.seg.transforms.RandomPaddingCrop",
                "pdx.slim.cal_params_sensitivities", "pdx.slim.visualize", "pdx.load_model",
                "pdx.deploy.export_inference_model", "pdx.prune.L1NormFilterPruner"]


@pytest.mark.parametrize("expr", ENTRY_POINTS)
def test_entry_point_after_a_bare_import(expr):
    code = f"import paddleprune as pdx; assert callable({expr}), {expr!r}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_bare_import_stays_light():
    code = "import sys, paddleprune as pdx; assert 'paddle' not in sys.modules; pdx.nothing_here"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "has no attribute 'nothing_here'" in proc.stderr
