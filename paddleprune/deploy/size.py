"""Size on disk of an exported model."""
import glob
import os

from paddleprune.deploy.common import PARAMS_FILENAME, inference_files

MB = 1024 * 1024


def model_size_mb(save_dir):
    """Size of the exported parameter file(s) in MiB (2**20 bytes).

    Parameters
    ----------
    save_dir : str or os.PathLike
        A directory written by :func:`~paddleprune.deploy.export_inference_model`.

    Returns
    -------
    float
        Total size of every ``*.pdiparams`` file in ``save_dir``.

    Raises
    ------
    DataNotFoundError
        If ``save_dir`` or its ``model.json`` / ``model.pdiparams`` is missing.
    """
    inference_files("model_size_mb", save_dir)
    files = set(glob.glob(os.path.join(os.fspath(save_dir), "*.pdiparams")))
    files.add(os.path.join(os.fspath(save_dir), PARAMS_FILENAME))
    return sum(os.path.getsize(f) for f in files) / MB
