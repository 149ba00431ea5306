"""The pruning engine: framework level, no task knowledge."""
from paddleprune.prune.criteria import CRITERIA, SELECTORS, criterion, selector
from paddleprune.prune.flops import count_params, dygraph_flops
from paddleprune.prune.groups import ChannelGroup, Member
from paddleprune.prune.plan import PruningMask, PruningPlan
from paddleprune.prune.pruner import (BNScaleFilterPruner, FilterPruner, FPGMFilterPruner,
                                      L1NormFilterPruner, L2NormFilterPruner, OptSlimFilterPruner,
                                      PruningWarning, SlimFilterPruner, apply_records)

__all__ = [
    "CRITERIA", "SELECTORS", "criterion", "selector", "count_params", "dygraph_flops",
    "ChannelGroup", "Member", "PruningMask", "PruningPlan", "FilterPruner", "L1NormFilterPruner",
    "L2NormFilterPruner", "FPGMFilterPruner", "BNScaleFilterPruner", "SlimFilterPruner",
    "OptSlimFilterPruner", "PruningWarning", "apply_records",
]
