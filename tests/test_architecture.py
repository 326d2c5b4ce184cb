"""The dependency rules of docs/architecture.md, enforced by reading every module's imports.

Each package may import only the packages listed for it (and itself). Imports anywhere in a
module count, including those inside functions, because a lazy import is still a dependency.
``__main__.py`` files are entry-point shims: nothing imports them, so they are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# package -> the project packages it may import (besides itself). Keep in step with
# docs/architecture.md, which says why.
ALLOWED = {
    "core": set(),
    "storage": {"core"},
    "extractors": {"core"},
    "hamnet": {"core"},
    "pipeline": {"core", "storage", "extractors", "hamnet"},
    "studies": {"core", "storage", "extractors", "hamnet", "pipeline"},
    "cli": {"core", "storage", "extractors", "hamnet", "pipeline", "studies"},
    "tasks": {"core", "storage", "extractors", "hamnet", "pipeline"},
}
PROJECT = set(ALLOWED) | {"tests", "bench"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & PROJECT


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_rules_allow(package):
    assert _modules(package), f"{package}/ has no modules: the rules name a package that does not exist"
    bad = {
        str(p.relative_to(REPO)): sorted(_imports(p) - ALLOWED[package] - {package})
        for p in _modules(package)
        if _imports(p) - ALLOWED[package] - {package}
    }
    assert not bad, f"imports that break docs/architecture.md: {bad}"


def test_every_package_is_governed_by_a_rule():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages - {"tests", "bench"} == set(ALLOWED), "a new package needs a rule here and in docs/architecture.md"


def test_main_shims_only_call_an_entry_point():
    for shim in REPO.glob("*/__main__.py"):
        body = [n for n in ast.parse(shim.read_text()).body if not isinstance(n, ast.Expr)]
        kinds = {type(n).__name__ for n in body}
        assert kinds <= {"Import", "ImportFrom", "If"}, f"{shim}: a __main__ shim must hold no logic"


def test_the_rule_checker_sees_lazy_imports(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from tasks.common import PipelineTask\n    import pipeline.config\n")
    assert _imports(mod) == {"tasks", "pipeline"}
