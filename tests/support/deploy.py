"""Reading the shipped deployment configuration (``deploy/``) the way its tools would:
Compose services and their mounts, Prometheus targets, PromQL metric names, and the
Prometheus metrics the code defines."""

import ast
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
DEPLOY = REPOSITORY / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yml"
LOCAL = "./local/"
"""Compose paths under this prefix are written by ``deploy/init-secrets``, never git."""
PYTHON_PACKAGES: tuple[str, ...] = tuple(
    tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
        "wheel"
    ]["packages"]
)
"""The packages the wheel ships, as ``pyproject.toml`` names them."""

_METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary"}
_METRIC_NAME = re.compile(r"\bcoreline_[a-z0-9_]+\b")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return document


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def option(command: list[str], name: str) -> str | None:
    """The value following ``name`` in a command line, if it is there."""
    if name in command[:-1]:
        return command[command.index(name) + 1]
    return None


@dataclass(frozen=True)
class Mount:
    source: str
    target: str

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/"))


def mounts(service: dict[str, Any]) -> list[Mount]:
    """A service's volumes (short syntax ``source:target[:mode]``)."""
    found = []
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        found.append(Mount(source, target))
    return found


def compose_paths(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every file or directory the Compose file names, as (who names it, path relative
    to deploy/)."""
    for name, service in document["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            context = build.get("context", ".")
            yield f"{name}: build context", context
            yield f"{name}: dockerfile", f"{context}/{build.get('dockerfile', 'Dockerfile')}"
        for mount in mounts(service):
            if mount.is_bind:
                yield f"{name}: volume {mount.target}", mount.source
        for env_file in service.get("env_file", []):
            yield f"{name}: env_file", env_file if isinstance(env_file, str) else env_file["path"]
    for name, secret in document.get("secrets", {}).items():
        yield f"secret {name}", secret["file"]


def prometheus_targets(config: dict[str, Any]) -> dict[str, set[str]]:
    """Static targets by job, each as ``host:port/path``."""
    targets: dict[str, set[str]] = {}
    for job in config["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs", []):
            targets.setdefault(job["job_name"], set()).update(
                f"{target}{path}" for target in static["targets"]
            )
    return targets


def metric_names_in(expression: str) -> set[str]:
    return set(_METRIC_NAME.findall(expression))


def exposed_metric_names() -> dict[str, Path]:
    """Every sample name the code's prometheus-client metrics expose, with the module
    that defines it (found by reading the sources, so nothing needs importing)."""
    exposed: dict[str, Path] = {}
    for package in PYTHON_PACKAGES:
        for path in (REPOSITORY / package).rglob("*.py"):
            for kind, name in _metric_definitions(path):
                for sample in _samples(kind, name):
                    exposed[sample] = path
    return exposed


def _metric_definitions(path: Path) -> Iterator[tuple[str, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        first = node.args[0]
        if (
            kind in _METRIC_CLASSES
            and isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and first.value.startswith("coreline_")
        ):
            yield kind, first.value


def _samples(kind: str, name: str) -> list[str]:
    """The sample names prometheus-client exposes for one metric."""
    if kind == "Counter":
        base = name.removesuffix("_total")
        return [f"{base}_total", f"{base}_created"]
    if kind == "Histogram":
        return [f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"]
    if kind == "Summary":
        return [name, f"{name}_count", f"{name}_sum", f"{name}_created"]
    return [name]


def settings_fields() -> set[str]:
    """Names of the fields of every pydantic-settings class (annotated class attributes
    of classes in the packages), which ``CORELINE_<FIELD>`` variables set."""
    fields: set[str] = set()
    for package in PYTHON_PACKAGES:
        for path in (REPOSITORY / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef) and "Settings" in node.name:
                    fields.update(
                        item.target.id
                        for item in node.body
                        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                    )
    return fields


def required_tool(name: str, install: str) -> str:
    """The path of a command-line tool the deployment checks need; fails (never skips)
    with what to install when it is missing."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/bin")
    if found is None:
        raise AssertionError(f"{name} not found: {install}")
    return found


def run(*command: str, cwd: Path = REPOSITORY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
