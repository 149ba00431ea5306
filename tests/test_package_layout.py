"""Package layout of the engine: no module shadowed by a function, the static API in its own package."""
import ast
import importlib
import pathlib
import types

import paddleprune.prune as P

PRUNE = pathlib.Path(P.__file__).parent
# what the legacy-Program package may import: itself and the neutral engine modules
NEUTRAL = {"paddleprune.errors", "paddleprune.prune.criteria", "paddleprune.prune.groups",
           "paddleprune.prune.tensors", "paddleprune.prune.sensitivity_table",
           "paddleprune.prune.sensitivity_files", "paddleprune.prune.rules"}


def test_flops_module_is_a_module_and_callable():
    m = importlib.import_module("paddleprune.prune.flops")
    assert isinstance(m, types.ModuleType) and m.__file__.endswith("flops.py")
    import paddleprune.prune.flops as alias
    assert alias is m and P.flops is m and callable(P.flops)
    assert callable(P.sensitivity) and P.sensitivity.__module__ == "paddleprune.prune.static.sensitivity"


def test_no_submodule_name_is_bound_to_something_else():
    for package, folder in ((P, PRUNE), (P.static, PRUNE / "static")):
        for path in folder.glob("*.py"):
            if path.stem == "__init__":
                continue
            importlib.import_module(f"{package.__name__}.{path.stem}")
            assert isinstance(getattr(package, path.stem), types.ModuleType), f"{package.__name__}.{path.stem}"


def test_static_package_imports_nothing_from_the_dygraph_engine():
    files = sorted((PRUNE / "static").glob("*.py"))
    assert {f.stem for f in files} >= {"__init__", "pruner", "walker", "ops", "flops", "sensitivity"}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("paddleprune"):
                names = [node.module] if node.module != "paddleprune.prune" else \
                    [f"paddleprune.prune.{a.name}" for a in node.names]
                for name in names:
                    ok = name in NEUTRAL or name.startswith(("paddleprune.prune.static", "paddleprune.utils"))
                    assert ok, f"{path.name} imports {name}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("paddleprune") for a in node.names), path.name


def test_public_static_names():
    from paddleprune.prune import Pruner, flops, program_flops, restore_scope, sensitivity  # noqa: F401
    from paddleprune.prune.static import Pruner as StaticPruner, StaticAnalysis  # noqa: F401
    assert Pruner is StaticPruner and P.PruningWarning is importlib.import_module("paddleprune.errors").PruningWarning
