"""Plot a sensitivities table and the model-level prune curve (PaddleX ``slim.visualize``)."""
import logging
import math
import os
from collections.abc import Mapping

from paddleprune.errors import InvalidParameterError
from paddleprune.prune.ratios import get_ratios_by_loss
from paddleprune.prune.sensitivity_files import load_sensitivities
from paddleprune.prune.sensitivity_table import is_number, normalize_sensitivities
from paddleprune.utils.atomic import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["visualize", "model_curve", "LOSS_GRID"]

#: ``eval_metric_loss`` values of the model-level curve: 0.05, 0.10, ..., 0.95 (as PaddleX).
LOSS_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: Up to this many layers get a legend; more get colours from a colour bar.
LEGEND_MAX = 12
_SERIES = {"pruned_flops": ("FLOPs removed", "tab:green"), "pruned_params": ("params removed", "tab:blue"),
           "mean_ratio": ("mean layer ratio", "tab:orange")}


def _costs(cost_fn, ratios):
    value = cost_fn(ratios)
    if is_number(value):
        value = {"flops": value}
    keys = sorted({"flops", "params"} & set(value)) if isinstance(value, Mapping) else []
    if not keys or not all(is_number(value[k]) and math.isfinite(float(value[k])) for k in keys):
        raise InvalidParameterError(f"visualize: 'cost_fn' must return {{'flops': fraction, 'params': "
                                    f"fraction}} (or a number, taken as FLOPs); got {value!r}.")
    return {f"pruned_{k}": float(value[k]) for k in keys}


def model_curve(sensitivities, cost_fn=None, losses=LOSS_GRID):
    """The model-level curve: what each ``eval_metric_loss`` removes.

    Parameters
    ----------
    sensitivities : dict
        ``{param_name: {ratio: loss}}``.
    cost_fn : callable, optional
        ``cost_fn(ratios) -> {"flops": fraction_removed, "params": fraction_removed}``.
    losses : sequence of float
        Thresholds to evaluate.

    Returns
    -------
    dict
        ``{"eval_metric_loss": [...], "mean_ratio": [...]}`` plus
        ``"pruned_flops"`` / ``"pruned_params"`` lists when ``cost_fn`` gives them.

    Raises
    ------
    InvalidParameterError
        If ``cost_fn`` returns something else than fractions, or changes its keys.
    """
    curve = {"eval_metric_loss": [float(t) for t in losses], "mean_ratio": []}
    for t in curve["eval_metric_loss"]:
        ratios = get_ratios_by_loss(sensitivities, t)
        curve["mean_ratio"].append(sum(ratios.values()) / len(ratios) if ratios else 0.0)
        if cost_fn is not None:
            costs = _costs(cost_fn, ratios)
            if len(curve["mean_ratio"]) > 1 and set(costs) != set(curve) - {"eval_metric_loss", "mean_ratio"}:
                raise InvalidParameterError(f"visualize: 'cost_fn' returned keys {sorted(costs)} at loss {t}, "
                                            f"unlike at the first point.")
            for key, value in costs.items():
                curve.setdefault(key, []).append(value)
    return curve


def _plot(table, curve, series, title, png_path):
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure  # no pyplot: no global backend or display

    fig = Figure(figsize=(14, 5.5), layout="constrained")
    ax_layers, ax_model = fig.subplots(1, 2)
    names = list(table)
    many = len(names) > LEGEND_MAX
    cmap = matplotlib.colormaps["viridis"]
    for i, name in enumerate(names):
        ratios, losses = list(table[name]), list(table[name].values())
        color = cmap(i / max(len(names) - 1, 1)) if many else None
        ax_layers.plot(ratios, losses, marker=".", linewidth=1, color=color, label=None if many else name)
    if many:
        bar = fig.colorbar(ScalarMappable(norm=Normalize(0, len(names) - 1), cmap=cmap), ax=ax_layers)
        bar.set_label("layer index (file order)")
    else:
        ax_layers.legend(fontsize="small")
    ax_layers.axhline(0.0, color="grey", linewidth=0.5)
    ax_layers.set(xlabel="pruning ratio", ylabel="relative metric loss", title="per-layer sensitivity",
                  xlim=(0, 1))
    ax_layers.grid(alpha=0.3)
    xs = curve["eval_metric_loss"]
    for key in series:
        label, color = _SERIES[key]
        ax_model.plot(xs, curve[key], marker="o", color=color, label=label)
        ax_model.annotate(f"{curve[key][0]:.3f}", (xs[0], curve[key][0]), textcoords="offset points",
                          xytext=(4, 6), fontsize="small", color=color)
    ylabel = "mean pruning ratio" if list(series) == ["mean_ratio"] else "fraction removed"
    ax_model.set(xlabel="eval_metric_loss (tolerated relative metric loss)", ylabel=ylabel,
                 title="model", xlim=(0, 1), ylim=(0, 1))
    ax_model.grid(alpha=0.3)
    ax_model.legend(loc="lower right")
    fig.suptitle(title)
    with atomic_open(png_path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def _write_vdl(logdir, table, curve, series):
    try:
        from visualdl import LogWriter
    except ImportError as exc:
        raise InvalidParameterError(f"visualize: 'vdl_logdir' needs visualdl ({exc}); "
                                    f"pip install visualdl.") from None
    with LogWriter(logdir=os.fspath(logdir)) as writer:
        for name, points in table.items():
            for ratio, loss in points.items():
                writer.add_scalar(tag=f"sensitivity/{name}", value=loss, step=int(round(ratio * 100)))
        for key in series:
            tag = "pruned/" + key.removeprefix("pruned_")
            for t, value in zip(curve["eval_metric_loss"], curve[key]):
                writer.add_scalar(tag=tag, value=value, step=int(round(t * 100)))


def visualize(sensitivities_file_or_dict, save_dir, cost_fn=None, model_name=None, vdl_logdir=None):
    """Plot per-layer sensitivities and the model-level prune curve.

    Writes ``save_dir/sensitivities.png`` (left: loss against ratio for every
    layer; right: for ``eval_metric_loss`` 0.05 ... 0.95, the fraction of
    FLOPs and parameters removed) and ``save_dir/sensitivities_xy.json`` with
    the plotted numbers.

    Parameters
    ----------
    sensitivities_file_or_dict : str, os.PathLike or dict
        A sensitivities file (JSON or legacy pickle) or a ``{name: {ratio: loss}}`` table.
    save_dir : str or os.PathLike
        Output folder (created if needed).
    cost_fn : callable, optional
        ``cost_fn(ratios) -> {"flops": fraction_removed, "params": fraction_removed}``
        (a bare number is taken as FLOPs). Without it the right panel shows
        the mean per-layer ratio.
    model_name : str, optional
        Title; defaults to the file's ``model`` metadata or its file name.
    vdl_logdir : str or os.PathLike, optional
        Also write the curves as VisualDL scalars: ``sensitivity/<layer>``
        (step = ratio x 100) and ``pruned/flops``, ``pruned/params`` or
        ``pruned/mean_ratio`` (step = loss x 100).

    Returns
    -------
    str
        Path of the PNG.

    Raises
    ------
    InvalidParameterError
        If the table is empty or malformed, ``save_dir`` is a file, or ``cost_fn`` misbehaves.
    SensitivityFileError, DataNotFoundError
        If the file cannot be read.
    """
    meta, source = {}, None
    if isinstance(sensitivities_file_or_dict, (str, os.PathLike)):
        source = os.fspath(sensitivities_file_or_dict)
        table, meta = load_sensitivities(source, return_meta=True)
    else:
        table = normalize_sensitivities(sensitivities_file_or_dict, "visualize")
    if not table:
        raise InvalidParameterError(f"visualize: no layers to plot in {source or 'the given table'}.")
    save_dir = os.fspath(save_dir)
    if os.path.isfile(save_dir):
        raise InvalidParameterError(f"visualize: 'save_dir' must be a folder; {save_dir} is a file.")
    os.makedirs(save_dir, exist_ok=True)
    name = model_name or meta.get("model") or (os.path.basename(source) if source else None)

    curve = model_curve(table, cost_fn)
    series = [k for k in ("pruned_flops", "pruned_params") if k in curve] if cost_fn else ["mean_ratio"]
    png_path = os.path.join(save_dir, "sensitivities.png")
    _plot(table, curve, series, f"{name}: sensitivities" if name else "sensitivities", png_path)
    atomic_write_json(os.path.join(save_dir, "sensitivities_xy.json"), {
        "model": name, "source": source, **curve,
        "layers": {name: {"ratio": list(points), "loss": list(points.values())}
                   for name, points in table.items()},
    })
    if vdl_logdir is not None:
        _write_vdl(vdl_logdir, table, curve, series)
    logger.info("visualize: wrote %s.", png_path)
    return png_path
