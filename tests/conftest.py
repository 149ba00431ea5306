import os

import numpy as np
import paddle
import pytest

os.environ.setdefault("PADDLEPRUNE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "paddleprune"))


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)
    np.random.seed(0)
    yield
