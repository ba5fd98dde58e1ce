"""The registry's folders are its layers, and imports flow one way (read from the source).

Every import counts, those inside functions too (the CLI imports per command): a module of one
layer may import its own layer, the layers below it and the shared modules, never a layer above.
The client and the wire types must stay light: they are what `pip install compeft-hub` gets.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Lowest first: a layer may import the ones before it in this list, never those after it.
LAYERS = ("wire", "db", "services", "api", "cli")
SHARED = {
    "registry",
    "registry.settings",
    "registry.errors",
    "registry.ids",
    "registry.origin",
    "registry.serving",
}
ALLOWED_FOR_CLIENT = {"registry.errors", "registry.ids"}
LOWER_PACKAGES = ("compeft_core", "storage", "retrieval")
# What the wire types may import besides the standard library: pydantic and plain constants.
WIRE_DEPENDENCIES = {"pydantic", "compeft_core.formats", "retrieval.limits"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every absolute module that `path` imports, `from package import module` resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            for alias in node.names:
                candidate = REPO / Path(*node.module.split("."), alias.name)
                if candidate.with_suffix(".py").is_file() or candidate.is_dir():
                    found.add(f"{node.module}.{alias.name}")
    return found


def _sources(package: str) -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted((REPO / package).rglob("*.py"))}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "registry" and parts[1] in LAYERS else None


def _upward_imports() -> list[str]:
    wrong = []
    for module, imported in _sources("registry").items():
        if module.startswith("registry.client"):
            continue
        own = _layer(module)
        ceiling = LAYERS.index(own) if own else -1  # shared modules import only the wire types
        for target in sorted(imported):
            layer = _layer(target)
            if target.startswith("registry.client") and own != "cli":
                wrong.append(f"{module} imports the client {target}")
            elif layer is not None and LAYERS.index(layer) > max(ceiling, 0):
                wrong.append(f"{module} ({own or 'shared'}) imports {target} ({layer})")
    return wrong


def test_no_registry_module_imports_a_layer_above_its_own() -> None:
    assert _upward_imports() == []


def test_the_layer_check_sees_an_upward_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check itself can fail: a db module that imports a service is reported."""
    fake = tmp_path / "registry" / "db"
    fake.mkdir(parents=True)
    (fake / "leak.py").write_text("from registry.services.catalog import get_expert\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert _upward_imports() == [
        "registry.db.leak (db) imports registry.services.catalog (services)"
    ]


def test_the_client_imports_only_itself_the_wire_types_and_the_shared_rules() -> None:
    for module, imported in _sources("registry/client").items():
        registry_imports = {target for target in imported if target.startswith("registry.")}
        outside = {
            target
            for target in registry_imports
            if not target.startswith(("registry.client", "registry.wire"))
        }
        assert outside <= ALLOWED_FOR_CLIENT, module


def test_the_wire_types_import_pydantic_and_plain_constants_only() -> None:
    for module, imported in _sources("registry/wire").items():
        third_party = {
            target
            for target in imported
            if target.split(".")[0] not in sys.stdlib_module_names
            and not target.startswith("registry.wire")
        }
        assert third_party <= WIRE_DEPENDENCIES, module


@pytest.mark.parametrize("package", LOWER_PACKAGES)
def test_the_lower_packages_never_import_the_registry(package: str) -> None:
    for module, imported in _sources(package).items():
        assert not any(target.split(".")[0] == "registry" for target in imported), module


def test_the_benches_never_import_the_tests() -> None:
    """Helpers both use (adapters, servers, processes) live in bench/; tests import them."""
    for module, imported in _sources("bench").items():
        assert not any(target.split(".")[0] == "tests" for target in imported), module
