"""The package's structure: imports point one way, and each concern has one home."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "dmt_core"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path) -> set[str]:
    """dmt_core modules imported anywhere in a file (lazy imports too, TYPE_CHECKING not)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
            for n in ast.walk(node)}  # fmt: skip
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("dmt_core"):
                # "from .data import x" may name a submodule x
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    found.add(sub if _exists(sub) else mod)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dmt_core")}
    found.discard(me)
    return found


def _exists(module: str) -> bool:
    p = PKG.parent.joinpath(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PKG.rglob("*.py")}


def test_model_and_data_import_nothing_above_them():
    graph = _graph()
    for mod, deps in graph.items():
        for sub in ("dmt_core.model", "dmt_core.data"):
            if mod == sub or mod.startswith(sub + "."):
                above = sorted(d for d in deps if not (d == sub or d.startswith(sub + ".")))
                assert not above, f"{mod} imports {above}"


def test_imports_form_no_cycle():
    """No import circle, counting the imports inside functions (packages' __init__ aside:
    they only re-export their own modules)."""
    graph = {m: {d for d in deps if not d.endswith("__main__")} for m, deps in _graph().items()}
    state: dict[str, int] = {}

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph.get(mod, ())):
            if dep in ("dmt_core", "dmt_core.model", "dmt_core.data", "dmt_core.recipes"):
                continue  # a package __init__: re-exports only
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, mod, dep]))
            if not state.get(dep):
                visit(dep, [*path, mod])
        state[mod] = 2

    for mod in sorted(graph):
        if not state.get(mod):
            visit(mod, [])


def test_shared_basics_have_one_home():
    """The ImageNet statistics and the pysodmetrics calls live in one module each."""
    mean = "0.485, 0.456, 0.406"
    holders = sorted(p.name for p in PKG.rglob("*.py") if mean in p.read_text())
    assert holders == ["transforms.py"], holders
    sod = sorted(
        str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if "py_sod_metrics" in p.read_text()
    )
    assert sod == ["metrics.py"], sod
