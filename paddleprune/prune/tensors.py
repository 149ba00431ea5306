"""Writing a parameter's dense tensor in place, on the device it lives on
(shared by the dygraph plans and the static Program pruner)."""
import numpy as np
import paddle

from paddleprune.errors import InvalidParameterError

__all__ = ["native_place", "write_dense"]


def native_place(place):
    """The concrete place (``CPUPlace()``, ``CUDAPlace(i)`` ...) that a generic
    ``paddle.Place`` names; ``DenseTensor.set`` accepts only those."""
    if place.is_cpu_place():
        return paddle.CPUPlace()
    if place.is_gpu_place():
        return paddle.CUDAPlace(place.gpu_device_id())
    if place.is_cuda_pinned_place():
        return paddle.CUDAPinnedPlace()
    if place.is_xpu_place():
        return paddle.XPUPlace(place.xpu_device_id())
    if place.is_custom_place():
        return paddle.CustomPlace(place.custom_device_type(), place.custom_device_id())
    raise InvalidParameterError(f"cannot write a tensor on {place}: unsupported device.")


def write_dense(dense, array, place=None):
    """Replace a DenseTensor's data (shape may change) on ``place``, default its own place."""
    place = native_place(dense._place()) if place is None else place
    dense.set(np.ascontiguousarray(array), place)
