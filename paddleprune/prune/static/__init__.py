"""The legacy-IR (ProgramDesc) static API of seed 002 / PaddleSlim: ``Pruner`` on a
``paddle.static.Program`` and its scope, the channel walk over Program ops, the
Program's FLOPs and sensitivities.

Modules: :mod:`.pruner` (``Pruner``), :mod:`.walker` (``StaticAnalysis``),
:mod:`.ops` (the op vocabulary), :mod:`.flops` (``program_flops``),
:mod:`.sensitivity` (``sensitivity``). The package imports nothing from the dygraph
engine (``analysis``, ``pruner``, ``sensitive``): shared pieces come from
:mod:`paddleprune.prune.groups`, :mod:`~paddleprune.prune.criteria`,
:mod:`~paddleprune.prune.tensors`, :mod:`~paddleprune.prune.sensitivity_table`,
:mod:`~paddleprune.prune.sensitivity_files` and :mod:`paddleprune.errors`.
``flops`` and ``sensitivity`` are exported as functions by :mod:`paddleprune.prune`,
not here, so that no submodule name is bound to a function.
"""
from paddleprune.prune.static.flops import program_flops
from paddleprune.prune.static.pruner import Pruner, restore_scope
from paddleprune.prune.static.walker import StaticAnalysis

__all__ = ["Pruner", "restore_scope", "program_flops", "StaticAnalysis"]
