"""Each distribution declares every package its code imports (issue 9): the bridge in
``pyproject.toml`` (extras for the optional parts), the hand-off client in
``plugin/handoff/pyproject.toml`` — which declares nothing else, so that an IdP installing it
gets no server packages. Read from the sources' import statements, matched to the installed
distributions that provide each module."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BRIDGE = REPO / "pyproject.toml"
HANDOFF = REPO / "plugin" / "handoff" / "pyproject.toml"


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported(*folders: Path) -> set[str]:
    """Top-level modules named by absolute imports in the folders' Python files."""
    names: set[str] = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names)


def requirements(pyproject: Path, *groups: str) -> set[str]:
    """Distribution names in ``dependencies`` and in the named extras."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    specs = list(project.get("dependencies", []))
    for group in groups:
        specs += project["optional-dependencies"][group]
    return {canonical(re.match(r"[A-Za-z0-9._-]+", spec).group()) for spec in specs}


@cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def providers(module: str) -> set[str]:
    found = _installed().get(module)
    assert found, f"no installed distribution provides {module!r} (run scripts/bootstrap.sh)"
    return {canonical(name) for name in found}


def undeclared(modules: set[str], declared: set[str], own: set[str]) -> list[str]:
    return sorted(m for m in modules - own if not providers(m) & declared)


def test_the_handoff_client_declares_exactly_what_it_imports():
    modules = imported(REPO / "plugin" / "handoff" / "stepup_handoff")
    declared = requirements(HANDOFF)
    assert undeclared(modules, declared, {"stepup_handoff"}) == []
    used = set().union(*(providers(m) for m in modules - {"stepup_handoff"}))
    assert declared - used == set(), "declared but never imported"


def test_the_handoff_client_needs_nothing_of_the_bridge():
    declared = requirements(HANDOFF)
    assert not declared & {"flask", "sqlalchemy", "gunicorn", "alembic", "authlib",
                           "python-keycloak", "stepup-bridge"}


@pytest.mark.parametrize("extras", [(), ("keycloak", "postgres", "redis")],
                         ids=["required", "with-extras"])
def test_the_bridge_declares_what_it_imports(extras):
    """Modules imported at start-up must be required; the optional ones (python-keycloak for
    ``stepup keycloak``, redis, the PostgreSQL driver) may come from an extra."""
    modules = imported(REPO / "bridge", REPO / "plugin" / "keycloak" / "stepup_keycloak")
    optional = {"keycloak", "redis"}  # imported only by the commands or settings that use them
    if not extras:
        modules -= optional
    missing = undeclared(modules, requirements(BRIDGE, *extras), {"bridge", "stepup_keycloak"})
    assert missing == []


def test_python_keycloak_is_an_extra_not_a_requirement():
    assert "python-keycloak" not in requirements(BRIDGE)
    assert "python-keycloak" in requirements(BRIDGE, "keycloak")


def test_the_tests_and_the_benchmark_are_covered_by_the_dev_extra():
    local = {p.stem for p in (REPO / "tests").rglob("*.py")} | {"tests"}
    modules = imported(REPO / "tests", REPO / "bench")
    own = {"bridge", "bench", "stepup_keycloak", "stepup_handoff"} | local  # bench: this repo's
    declared = requirements(BRIDGE, "dev", "keycloak", "postgres", "redis")
    assert undeclared(modules, declared, own) == []


def test_a_worker_loads_requests_only_when_it_needs_it(tmp_path):
    """The bridge's app uses ``stepup_handoff.deadline`` but not the client: building it must
    not load ``requests`` (5 MiB a gunicorn worker, docs/operations.md); the package's names
    still all resolve when asked for."""
    import subprocess

    probe = ("import sys, stepup_handoff\n"
             "from bridge.app import create_app\n"
             "create_app()\n"
             "assert 'requests' not in sys.modules, 'requests loaded'\n"
             "for name in stepup_handoff.__all__:\n"
             "    getattr(stepup_handoff, name)\n"
             "assert 'requests' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin",
                                            "STEPUP_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
