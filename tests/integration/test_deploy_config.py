"""The shipped deployment (``deploy/``) holds together: the Compose file is valid and
names only files that exist or that ``deploy/init-secrets`` writes, the broker it
describes really starts and lets a device and a gateway in, Prometheus's configuration
and alert rules pass ``promtool``, every metric a dashboard or rule uses exists in the
code, and the Kubernetes manifests render."""

import base64
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import (
    COMPOSE_FILE,
    DEPLOY,
    LOCAL,
    command_of,
    compose,
    compose_paths,
    exposed_metric_names,
    load_yaml,
    metric_names_in,
    mounts,
    option,
    prometheus_targets,
    required_tool,
    run,
    settings_fields,
)
from tests.support.mosquitto import find_mosquitto
from tests.support.postgres import free_port
from tests.support.secured_broker import (
    Clients,
    Identity,
    SecuredBroker,
    derive_config,
    hand_over_tree,
    issue_cert,
    signed_by,
    wait_listening,
)
from transport import BrokerAddress

PROMTOOL_MISSING = "install Debian's prometheus package: apt-get install prometheus"
KUBECTL_MISSING = "install kubectl (Debian: apt-get install kubernetes-client)"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a container must listen on
PROCESSES = ("gateway", "projector", "api")
"""The long-running Coreline processes, each serving Prometheus metrics."""


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``deploy/init-secrets`` writes for deploy/local/, into a temporary directory
    (with 127.0.0.1 among the broker's names, for clients on this machine)."""
    out = tmp_path_factory.mktemp("deploy") / "local"
    result = run(str(DEPLOY / "init-secrets"), "--out", str(out), "--broker-name", "127.0.0.1")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """deploy/compose.yml, parsed (YAML anchors and merge keys resolved)."""
    return compose()


def in_deploy(path: str, local: Path) -> Path:
    """Where a path named by the Compose file is: deploy/local/ is ``local`` here."""
    if path.startswith(LOCAL):
        return local / path.removeprefix(LOCAL)
    return (DEPLOY / path).resolve()


def coreline_services(document: dict[str, Any], subcommand: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in document["services"].items()
        if str(service.get("image", "")).startswith("coreline")
        and command_of(service)[:1] == [subcommand]
    }


# -- Compose ------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    """deploy/compose.yml validates against the Compose Specification's JSON schema (as
    shipped by check-jsonschema), and the same check refuses a misspelled key."""
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    result = run(*check, str(COMPOSE_FILE))
    assert "No module named check_jsonschema" not in result.stderr, (
        "check-jsonschema is missing: pip install -e '.[dev]'"
    )
    assert result.returncode == 0, result.stdout + result.stderr

    with tempfile.TemporaryDirectory() as scratch:
        broken = Path(scratch) / "compose.yml"
        broken.write_text(COMPOSE_FILE.read_text().replace("    depends_on:", "    dependz_on:"))
        refused = run(*check, str(broken))
    assert refused.returncode != 0
    assert "dependz_on" in refused.stdout + refused.stderr


def test_compose_names_only_files_that_exist_or_that_init_secrets_writes(
    document: dict[str, Any], local: Path
) -> None:
    """Every build context, Dockerfile, bind mount, env file and secret file exists in
    the repository, or is one that deploy/init-secrets has just written."""
    named = list(compose_paths(document))
    assert any(path.startswith(LOCAL) for _, path in named)
    missing = [f"{who}: {path}" for who, path in named if not in_deploy(path, local).exists()]
    assert not missing, missing


def test_two_gateways_share_one_subscription_group_with_their_own_client_ids(
    document: dict[str, Any],
) -> None:
    """At least two gateways run with --share-group coreline-gateway, each with a client
    id of its own, and each waits for the schema migration to have succeeded."""
    gateways = coreline_services(document, "gateway")
    assert len(gateways) >= 2
    commands = [command_of(service) for service in gateways.values()]
    assert {option(command, "--share-group") for command in commands} == {"coreline-gateway"}
    client_ids = [option(command, "--client-id") for command in commands]
    assert None not in client_ids
    assert len(set(client_ids)) == len(client_ids)
    migrate = coreline_services(document, "db")
    assert [command_of(service) for service in migrate.values()] == [["db", "upgrade"]]
    (migrate_name,) = migrate
    for name in (*gateways, *coreline_services(document, "projector")):
        depends = document["services"][name]["depends_on"]
        assert depends[migrate_name]["condition"] == "service_completed_successfully", name
        assert "healthcheck" in document["services"][name], name


def test_prometheus_scrapes_every_coreline_process(document: dict[str, Any]) -> None:
    """Each gateway, the projector and the API of the Compose file is a Prometheus
    target on the separate metrics port its command (or the setting's default) serves
    metrics on, listening on every interface and never published to the host."""
    expected: set[str] = set()
    for subcommand in PROCESSES:
        services = coreline_services(document, subcommand)
        assert services, f"no {subcommand} service in deploy/compose.yml"
        for name, service in services.items():
            command = command_of(service)
            default = "9101" if subcommand == "gateway" else None
            port = option(command, "--metrics-port") or default
            variable = f"CORELINE_{subcommand.upper()}_METRICS_HOST"
            assert service["environment"][variable] == ALL_INTERFACES, name
            assert port is not None, name
            published = [str(mapping).split(":")[-1] for mapping in service.get("ports", [])]
            assert port not in published, name
            expected.add(f"{name}:{port}/metrics")
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    scraped = set().union(*prometheus_targets(config).values())
    assert expected <= scraped, expected - scraped
    scraped_coreline = {target for target in scraped if not target.startswith("localhost")}
    assert scraped_coreline <= expected, scraped_coreline - expected


def test_secrets_come_from_files_never_from_the_compose_file(document: dict[str, Any]) -> None:
    """No service sets a password, key, token or cookie in its environment (only *_FILE
    paths), and the webhook master key and database URL reach the processes through
    env files."""
    secretive = ("PASSWORD", "SECRET", "KEY", "TOKEN", "COOKIE", "DATABASE_URL", "MQTT_URL")
    for name, service in document["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), name
        for variable in environment:
            if any(word in variable for word in secretive):
                assert variable.endswith(("_FILE", "__FILE")), f"{name}: {variable}"
    for subcommand in ("projector", "api"):
        for name, service in coreline_services(document, subcommand).items():
            assert "./local/alerts.env" in service["env_file"], name


def test_every_coreline_variable_in_deploy_is_a_setting(
    document: dict[str, Any], local: Path
) -> None:
    """Each CORELINE_* variable the deployment sets (Compose, init-secrets' env files,
    the Kubernetes config and secret) is a field of a settings class in the code, so a
    misspelt or renamed variable cannot be silently ignored."""
    variables: set[str] = set()
    for service in document["services"].values():
        variables.update(service.get("environment", {}))
    for env_file in [*local.glob("*.env"), *(DEPLOY / "k8s" / "base").glob("*.env")]:
        for line in env_file.read_text().splitlines():
            if line and not line.startswith("#"):
                variables.add(line.split("=", 1)[0])
    coreline = {variable for variable in variables if variable.startswith("CORELINE_")}
    assert "CORELINE_WEBHOOK_MASTER_KEY" in coreline
    fields = settings_fields()
    unknown = sorted(v for v in coreline if v.removeprefix("CORELINE_").lower() not in fields)
    assert not unknown, f"set in deploy/ but read by no settings class: {unknown}"


# -- the broker Compose runs ------------------------------------------------------------


@pytest.fixture
def compose_broker(document: dict[str, Any], local: Path) -> Iterator[SecuredBroker]:
    """Mosquitto run from the Compose service's own mounts: the shipped configuration
    (ports and container paths moved) and ACL, with the password file and certificates
    deploy/init-secrets wrote."""
    service = document["services"]["mosquitto"]
    assert {str(port) for port in service["ports"]} == {"8883:8883", "8884:8884"}
    # mkdtemp, not tmp_path: the broker drops to the mosquitto user, who must reach it.
    root = Path(tempfile.mkdtemp(prefix="coreline-compose-broker-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        for mount in mounts(service):
            assert mount.target.startswith("/mosquitto/"), mount
            place = root / mount.target.removeprefix("/mosquitto/")
            if not mount.is_bind:
                place.mkdir(parents=True)  # a named volume: the broker's data
            elif in_deploy(mount.source, local).is_dir():
                shutil.copytree(in_deploy(mount.source, local), place)
            else:
                place.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(in_deploy(mount.source, local), place)
        config = root / "config" / "mosquitto.conf"
        device_port, service_port = free_port(), free_port()
        config.write_text(derive_config(config.read_text(), root, device_port, service_port))
        hand_over_tree(root)
        with (root / "mosquitto.log").open("wb") as log:
            process = subprocess.Popen(
                [find_mosquitto(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_listening(process, (device_port, service_port), root / "mosquitto.log")
        issue_cert(*signed_by(local / "ca"), "--device", "HP-000042", "--out", str(root / "d"))
        gateway_url = (local / "gateway.env").read_text().strip().split("=", 1)[1]
        gateway = BrokerAddress.parse(gateway_url)
        assert (gateway.host, gateway.port, gateway.username) == ("mosquitto", 8884, "gateway")
        yield SecuredBroker(
            device_port=device_port,
            service_port=service_port,
            ca_cert=local / "mosquitto" / "certs" / "fleet-ca.crt",
            server=Identity(root / "config/certs/server.crt", root / "config/certs/server.key"),
            devices={"HP-000042": Identity(root / "d/HP-000042.crt", root / "d/HP-000042.key")},
            passwords={"gateway": str(gateway.password)},
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=15)
        shutil.rmtree(root, ignore_errors=True)


def test_the_compose_broker_lets_a_device_and_the_gateway_in(
    compose_broker: SecuredBroker,
) -> None:
    """The broker laid out as Compose mounts it listens on both ports; a device with a
    certificate from the fleet CA publishes its events, and the gateway (the password
    from gateway.env, the broker certificate checked against the fleet CA) receives
    them through the shared subscription."""
    clients = Clients(compose_broker)
    try:
        gateway = clients.account("gateway")
        topic = "coreline/v1/devices/HP-000042/events"
        assert not gateway.subscribe(f"$share/coreline-gateway/{topic}")[0].is_failure
        device = clients.device("HP-000042")

        assert not device.publish(topic, b"batch").is_failure
        assert gateway.wait_for(b"batch") == [(topic, b"batch")]
    finally:
        clients.close_all()


# -- Prometheus and Grafana ---------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    return required_tool("promtool", PROMTOOL_MISSING)


def test_alert_rules_pass_promtool(promtool: str) -> None:
    """promtool accepts the rules and their unit tests pass (alerts_test.yml: each rule
    fires on its symptom, after its hold time, and not before)."""
    rules = DEPLOY / "prometheus" / "alerts.yml"
    checked = run(promtool, "check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = {rule["alert"] for group in load_yaml(rules)["groups"] for rule in group["rules"]}
    wanted = {
        "CorelineGatewayDown", "CorelineProjectionLagHigh", "CorelineDeadLetterSurge",
        "CorelineGatewayStoreFailures", "CorelineApiErrorRate",
    }  # fmt: skip
    assert wanted <= names


def test_prometheus_configuration_passes_promtool(promtool: str) -> None:
    """promtool accepts prometheus.yml, including the rule file it loads."""
    checked = run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "coreline.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_expressions() -> list[str]:
    groups = load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


@pytest.mark.parametrize("source", ["grafana dashboard", "alert rules"])
def test_dashboards_and_rules_use_only_metrics_the_code_defines(source: str) -> None:
    """Every coreline_* metric a panel or rule queries is defined by a prometheus-client
    metric in the code: renaming a metric without its dashboard fails here."""
    expressions = dashboard_expressions() if source == "grafana dashboard" else rule_expressions()
    used = set().union(*(metric_names_in(expression) for expression in expressions))
    assert {name.split("_")[1] for name in used} >= {"gateway", "projector"}
    defined = exposed_metric_names()
    assert not used - defined.keys(), sorted(used - defined.keys())


def test_grafana_provisions_the_dashboard_against_the_provisioned_prometheus(
    document: dict[str, Any],
) -> None:
    """The dashboard's panels query the provisioned data source by its uid, the file
    provider reads the directory Compose mounts the dashboards at, and the panels the
    operations guide names are there."""
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(provisioning / "dashboards" / "coreline.yml")["providers"]
    grafana_mounts = {
        mount.target: mount.source for mount in mounts(document["services"]["grafana"])
    }
    assert grafana_mounts[provider["options"]["path"]] == "./grafana/dashboards"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "coreline.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Ingest rate", "Dead letters", "Alerts", "Commit latency p99", "API latency"} <= titles
    assert any("lag" in title.lower() for title in titles)


# -- Kubernetes ---------------------------------------------------------------------------

K8S_BASE = DEPLOY / "k8s" / "base"


def test_kustomization_lists_only_files_that_exist() -> None:
    """Every resource, generator file of the base exists and every YAML file parses."""
    kustomization = load_yaml(K8S_BASE / "kustomization.yaml")
    listed = list(kustomization["resources"])
    for generator in (*kustomization["configMapGenerator"], *kustomization["secretGenerator"]):
        listed += generator.get("envs", []) + generator.get("files", [])
    assert [name for name in listed if not (K8S_BASE / name).is_file()] == []
    for manifest in K8S_BASE.glob("*.yaml"):
        assert all(part is not None for part in yaml.safe_load_all(manifest.read_text()))


def render(directory: Path) -> list[dict[str, Any]]:
    kubectl = required_tool("kubectl", KUBECTL_MISSING)
    result = run(kubectl, "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    return [part for part in yaml.safe_load_all(result.stdout) if part]


def find(rendered: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in rendered if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def test_the_base_renders_the_processes_with_their_scaling_rules() -> None:
    """kubectl kustomize renders the base: two gateways (a StatefulSet, for stable client
    ids) with an autoscaler that never scales down by itself, one projector replaced by
    Recreate, the API with its Service, the migration Job, and scrape annotations that
    point at a declared container port."""
    rendered = render(K8S_BASE)
    assert {r["metadata"].get("namespace") for r in rendered if r["kind"] != "Namespace"} == {
        "coreline"
    }
    gateway = find(rendered, "StatefulSet", "coreline-gateway")
    assert gateway["spec"]["replicas"] == 2
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert option(container["args"], "--share-group") == "coreline-gateway"
    assert option(container["args"], "--client-id") == "$(POD_NAME)"
    autoscaler = find(rendered, "HorizontalPodAutoscaler", "coreline-gateway")
    assert autoscaler["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert autoscaler["spec"]["minReplicas"] == 2
    (scale_down,) = autoscaler["spec"]["behavior"]["scaleDown"]["policies"]
    assert (scale_down["type"], scale_down["value"]) == ("Pods", 1)
    assert scale_down["periodSeconds"] >= 300
    projector = find(rendered, "Deployment", "coreline-projector")
    assert projector["spec"]["replicas"] == 1
    assert projector["spec"]["strategy"]["type"] == "Recreate"
    api = find(rendered, "Deployment", "coreline-api")
    service = find(rendered, "Service", "coreline-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    job = find(rendered, "Job", "coreline-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    for workload in (gateway, projector, api):
        template = workload["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert int(annotations["prometheus.io/port"]) in ports


def test_an_overlay_replaces_the_placeholder_secret(tmp_path: Path) -> None:
    """The base's Secret holds placeholders only; an overlay's secretGenerator with
    behavior: replace swaps it, and every workload then refers to the overlay's."""
    (base,) = [r for r in render(K8S_BASE) if r["kind"] == "Secret"]
    assert base["metadata"]["name"].startswith("coreline-secrets-")  # hashed by the generator
    shutil.copytree(K8S_BASE, tmp_path / "base")
    overlay = tmp_path / "production"
    overlay.mkdir()
    (overlay / "secrets.env").write_text(
        "CORELINE_DATABASE_URL=postgresql://coreline:real@db:5432/coreline\n"
        f"CORELINE_WEBHOOK_MASTER_KEY={'k' * 64}\n"
        "GATEWAY_MQTT_URL=mqtts://gateway:real@mqtt:8884\n"
        "ALERTS_MQTT_URL=mqtts://api:real@mqtt:8884\n"
    )
    (overlay / "kustomization.yaml").write_text(
        "resources: [../base]\n"
        "secretGenerator:\n"
        "  - name: coreline-secrets\n"
        "    behavior: replace\n"
        "    envs: [secrets.env]\n"
    )
    rendered = render(overlay)
    (secret,) = [r for r in rendered if r["kind"] == "Secret"]
    referenced = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for r in rendered
        if r["kind"] in {"Deployment", "StatefulSet", "Job"}
        for container in r["spec"]["template"]["spec"]["containers"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert referenced == {secret["metadata"]["name"]}
    assert secret["metadata"]["name"] != base["metadata"]["name"]
    assert base64.b64decode(secret["data"]["CORELINE_WEBHOOK_MASTER_KEY"]) == b"k" * 64
    placeholders = [base64.b64decode(value).decode() for value in base["data"].values()]
    assert all("REPLACE-ME" in value for value in placeholders), placeholders
