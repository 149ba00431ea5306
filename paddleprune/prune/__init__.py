"""The pruning engine: framework level, no task knowledge."""
from paddleprune.prune.criteria import CRITERIA, SELECTORS, criterion, selector
from paddleprune.prune.flops import count_params, dygraph_flops
from paddleprune.prune.groups import ChannelGroup, Member
from paddleprune.prune.plan import PruningMask, PruningPlan
from paddleprune.prune.pruner import (BNScaleFilterPruner, FilterPruner, FPGMFilterPruner,
                                      L1NormFilterPruner, L2NormFilterPruner, OptSlimFilterPruner,
                                      PruningWarning, SlimFilterPruner, apply_records, sensitive)
from paddleprune.prune.ratios import get_ratios_by_loss, round_to, search_loss_threshold
from paddleprune.prune.sensitivity_files import (load_sensitivities, merge_sensitive,
                                                 save_sensitivities)

__all__ = [
    "CRITERIA", "SELECTORS", "criterion", "selector", "count_params", "dygraph_flops",
    "ChannelGroup", "Member", "PruningMask", "PruningPlan", "FilterPruner", "L1NormFilterPruner",
    "L2NormFilterPruner", "FPGMFilterPruner", "BNScaleFilterPruner", "SlimFilterPruner",
    "OptSlimFilterPruner", "PruningWarning", "apply_records", "sensitive", "get_ratios_by_loss",
    "round_to", "search_loss_threshold", "load_sensitivities", "merge_sensitive", "save_sensitivities",
]

# Static (legacy-IR Program) API of seed 002, from paddleprune.prune.static. ``flops`` is the
# module paddleprune.prune.flops, callable as flops(program_or_layer, ...); ``sensitivity`` is
# the function of paddleprune.prune.static.sensitivity (there is no module of that name here).
from paddleprune.prune import flops  # noqa: E402
from paddleprune.prune.static.flops import program_flops  # noqa: E402
from paddleprune.prune.static.pruner import Pruner, restore_scope  # noqa: E402
from paddleprune.prune.static.sensitivity import sensitivity  # noqa: E402

__all__ += ["Pruner", "restore_scope", "flops", "program_flops", "sensitivity"]
