"""Reading the shipped deployment configuration (``deploy/``) the way its tools would:
Compose services and their mounts, Compose files merged as Compose merges them,
HAProxy's listeners, Prometheus targets, PromQL metric names, and the Prometheus
metrics the code and the backup wrapper define."""

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
HA_COMPOSE_FILE = DEPLOY / "compose.ha.yml"
"""The overlay that replaces the single database with the Patroni cluster."""
BACKUP_SCRIPT = DEPLOY / "patroni" / "backup.sh"
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
_PATRONI_METRIC_NAME = re.compile(r"\bpatroni_[a-z0-9_]+\b")
_REPLACED_IN_MERGE = {"command", "entrypoint", "test"}
"""Sequences a later Compose file replaces instead of extending (``test``: a health
check's command)."""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return document


def merge_compose(base: Any, overlay: Any, key: str = "") -> Any:
    """``overlay`` over ``base`` by the Compose Specification's merge rules: mappings
    merge key by key, sequences are extended (without repeating an entry), except
    commands, entry points and health-check tests, which are replaced, as are scalars."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for name, value in overlay.items():
            merged[name] = merge_compose(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(overlay, list) and key not in _REPLACED_IN_MERGE:
        return base + [item for item in overlay if item not in base]
    return overlay


def enabled_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services ``docker compose up`` starts without naming a profile."""
    return {name: s for name, s in document["services"].items() if not s.get("profiles")}


def env_file_values(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of an env file."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@dataclass(frozen=True)
class HaproxyServer:
    name: str
    address: str
    check_port: int | None


@dataclass(frozen=True)
class HaproxyListener:
    """A ``listen`` section: where it binds, the HTTP check it runs, its servers."""

    port: int
    check: str | None
    servers: tuple[HaproxyServer, ...]


def haproxy_listeners(path: Path) -> dict[str, HaproxyListener]:
    """The ``listen`` sections of an HAProxy configuration, by name."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in path.read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if not raw[0].isspace():
            current = sections.setdefault(words[1], []) if words[0] == "listen" else None
        elif current is not None:
            current.append(words)
    listeners = {}
    for name, lines in sections.items():
        (bind,) = [words[1] for words in lines if words[0] == "bind"]
        checks = [words[3] for words in lines if words[:3] == ["option", "httpchk", "GET"]]
        servers = tuple(
            HaproxyServer(words[1], words[2], int(option(words, "port") or 0) or None)
            for words in lines
            if words[0] == "server"
        )
        listeners[name] = HaproxyListener(int(bind.rsplit(":", 1)[1]), next(iter(checks), None),
                                          servers)  # fmt: skip
    return listeners


def patroni_metric_names(patroni: str) -> set[str]:
    """The metric names Patroni's REST API serves on /metrics, read from the source of
    the Patroni installed as the program ``patroni`` (it writes them as text)."""
    interpreter = Path(patroni).read_text().splitlines()[0].removeprefix("#!").split()
    found = subprocess.run(
        [*interpreter, "-c", "import patroni.api; print(patroni.api.__file__)"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return set(_PATRONI_METRIC_NAME.findall(Path(found.stdout.strip()).read_text()))


def backup_metric_names() -> set[str]:
    """The metrics deploy/patroni/backup.sh writes (its ``# TYPE`` lines)."""
    return set(re.findall(r"^# TYPE (coreline_[a-z0-9_]+) ", BACKUP_SCRIPT.read_text(), re.M))


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
