"""The package layering (issue 11): no daemon imports another daemon's package, the device runtime
(:mod:`confkit`) only :mod:`protocol`, :mod:`protocol` none of ours; :mod:`provisioning` and :mod:`hub` no
daemon. Every import counts, at any level: inside functions, under ``if TYPE_CHECKING``, relative ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = frozenset({"gate_agent", "kiosk_agent", "printer_agent", "confkit", "protocol", "provisioning", "hub",
                  "tests", "bench", "scripts"})
DAEMONS = ("gate_agent", "kiosk_agent", "printer_agent")

# package -> the packages of ours it may import (besides itself); everything else of ours is refused
ALLOWED: dict[str, frozenset[str]] = {
    **{daemon: frozenset({"confkit", "protocol"}) for daemon in DAEMONS},
    "confkit": frozenset({"protocol"}),
    "protocol": frozenset(),
    "provisioning": frozenset({"confkit", "protocol"}),
    "hub": frozenset({"confkit", "protocol", "provisioning"}),
}


def imported(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``tree``, relative ones resolved to ``package``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, package if node.level else (node.module or "")))
    return found


def violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in imported(tree, package):
            top = module.split(".")[0]
            if top in OURS and top not in allowed:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    bad = violations(package)
    assert not bad, (f"{package} may import only {sorted(ALLOWED[package])} of ours:\n  " + "\n  ".join(bad))


def test_the_checker_sees_imports_inside_functions_and_relative_ones() -> None:
    tree = ast.parse("def f():\n    from gate_agent.app import run_gate\n"
                     "if TYPE_CHECKING:\n    import hub.app\nfrom . import link\n")
    assert sorted(imported(tree, "printer_agent")) == [(2, "gate_agent.app"), (4, "hub.app"), (5, "printer_agent")]
