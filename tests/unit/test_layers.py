"""The package structure holds: imports run one way, and each outside library has one
owner (docs/architecture.md, "Dependencies")."""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FIRST_PARTY = (
    "schemas",
    "seal_keys",
    "fleet_ca",
    "transport",
    "edge_agent",
    "simulation",
    "gateway",
    "services",
)

ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "seal_keys": {"schemas"},
    "fleet_ca": {"schemas"},
    "transport": {"schemas"},
    "edge_agent": {"schemas", "transport", "seal_keys", "fleet_ca"},
    "simulation": {"schemas", "seal_keys", "transport", "edge_agent"},
    "gateway": {
        "schemas", "seal_keys", "transport", "services.eventstore", "services.settings",
        "services.collector",
    },
    "services.collector": set(),
    "services.eventstore": {"schemas"},
    "services.transparency": set(),
    "services.merkle_log": {"services.eventstore", "services.transparency"},
    "services.settings": {"transport", "services.eventstore", "services.transparency"},
    "services.projections": {"schemas", "services.eventstore"},
    "services.alerts": {"schemas", "services.projections"},
    "services.audit": {"schemas", "seal_keys", "services.eventstore"},
    "services.egress": set(),
    "services.evidence": {
        "schemas", "services.eventstore", "services.audit", "services.merkle_log",
        "services.transparency",
    },
    "services.delivery": {
        "schemas", "transport", "services.eventstore", "services.settings", "services.egress",
    },
    "services.config_delivery": {
        "schemas", "transport", "services.eventstore",
    },
    "services.projector": {
        "schemas", "transport", "services.eventstore", "services.projections",
        "services.alerts", "services.delivery", "services.settings", "services.merkle_log",
        "services.collector",
    },
    "services.api": {
        "schemas", "seal_keys", "fleet_ca", "transport", "services.eventstore",
        "services.projections",
        "services.alerts", "services.audit", "services.delivery", "services.egress",
        "services.settings", "services.merkle_log", "services.evidence",
        "services.config_delivery",
    },
}  # fmt: skip
"""Which packages each package may import.  The command line and the demo wire
everything together and may import anything."""

OWNERS = {
    "paho": {"transport"},
    "psycopg": {"services.eventstore"},
    "httpcore": {"services.egress"},
    "argon2": {"services.api"},
    "cryptography": {
        "services.api",
        "seal_keys",
        "fleet_ca",
        "services.merkle_log",
        "services.transparency",
    },
    "authlib": {"services.api"},
    "nacl": {"seal_keys"},
}
"""Outside libraries that exactly one package may import."""


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return f"services.{parts[1]}" if parts[0] == "services" else parts[0]


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for top in _FIRST_PARTY:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    parts = module.split(".")
                    target = f"services.{parts[1]}" if parts[0] == "services" else parts[0]
                    found[_package(path)].add(target)
    return found


def test_packages_import_only_downwards() -> None:
    """No package imports one it may not: pure packages never import each other sideways."""
    imports = _imports()
    wrong = {
        package: sorted(
            target
            for target in targets
            if target.split(".")[0] in _FIRST_PARTY
            and target != package
            and target not in ALLOWED[package]
        )
        for package, targets in imports.items()
        if package in ALLOWED
    }
    assert {package: targets for package, targets in wrong.items() if targets} == {}


def test_each_outside_library_has_one_owner() -> None:
    """paho is imported by the transport package alone, psycopg by the store alone."""
    imports = _imports()
    for library, owners in OWNERS.items():
        importers = {package for package, targets in imports.items() if library in targets}
        assert importers == owners, library
