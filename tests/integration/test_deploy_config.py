"""The shipped deployment (``deploy/``) holds together: the Compose file is valid and
names only files that exist or that ``deploy/init-secrets`` writes, the broker it
describes really starts and lets a device and a gateway in, the highly available
database's overlay is whole (Patroni and HAProxy accept their configuration, every
file agrees on paths, ports and names), Prometheus's configuration and alert rules
pass ``promtool``, every metric a dashboard or rule uses exists in the code, Patroni or
the backup wrapper, and the Kubernetes manifests render."""

import base64
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import (
    BACKUP_SCRIPT,
    COMPOSE_FILE,
    DEPLOY,
    HA_COMPOSE_FILE,
    LOCAL,
    backup_metric_names,
    command_of,
    compose,
    compose_paths,
    enabled_services,
    env_file_values,
    exposed_metric_names,
    haproxy_listeners,
    load_yaml,
    merge_compose,
    metric_names_in,
    mounts,
    option,
    patroni_metric_names,
    prometheus_targets,
    required_tool,
    run,
    settings_fields,
)
from tests.support.mosquitto import find_mosquitto
from tests.support.platform_processes import wait_for_port
from tests.support.postgres import free_port
from tests.support.secured_broker import (
    Clients,
    Identity,
    SecuredBroker,
    derive_config,
    hand_over_tree,
    issue_device,
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
        issue_device(local / "ca", "HP-000042", root / "d")
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


# -- the highly available database (compose.ha.yml) ---------------------------------------

PATRONI = DEPLOY / "patroni"
HAPROXY_CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"
HAPROXY_MISSING = "install Debian's haproxy package: apt-get install haproxy"
PATRONI_MISSING = "install Debian's patroni package: apt-get install patroni"
ETCD_MISSING = "install Debian's etcd-server package: apt-get install etcd-server"


@pytest.fixture(scope="module")
def ha_document() -> dict[str, Any]:
    """deploy/compose.yml with deploy/compose.ha.yml over it, merged as Compose does."""
    merged: dict[str, Any] = merge_compose(compose(), load_yaml(HA_COMPOSE_FILE))
    return merged


def patroni_nodes(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from deploy/patroni."""
    return {
        name: service
        for name, service in enabled_services(document).items()
        if isinstance(service.get("build"), dict) and service["build"]["context"] == "./patroni"
    }


def named_volume_at(service: dict[str, Any], target: str) -> str:
    (source,) = [mount.source for mount in mounts(service) if mount.target == target]
    return source


def pgbackrest_settings() -> dict[str, dict[str, str]]:
    """deploy/patroni/pgbackrest.conf, by section."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in (PATRONI / "pgbackrest.conf").read_text().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif line and not line.startswith("#"):
            name, value = line.split("=", 1)
            current[name] = value
    return sections


def test_the_ha_overlay_follows_the_compose_specification() -> None:
    """deploy/compose.ha.yml validates against the Compose Specification's JSON schema."""
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    result = run(*check, str(HA_COMPOSE_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_ha_overlay_names_only_files_that_exist_or_that_init_secrets_writes(
    ha_document: dict[str, Any], local: Path
) -> None:
    """Every build context, Dockerfile, bind mount, env file and secret file of the
    merged model exists, or is one that deploy/init-secrets has just written."""
    named = list(compose_paths(ha_document))
    assert ("patroni-1: build context", "./patroni") in named
    missing = [f"{who}: {path}" for who, path in named if not in_deploy(path, local).exists()]
    assert not missing, missing


def test_three_patroni_nodes_on_three_etcd_members_replace_the_single_database(
    ha_document: dict[str, Any],
) -> None:
    """The single database is off (a profile); three etcd members form one cluster;
    three Patroni nodes, each named after its service with its own data volume, share
    one pgBackRest repository and one backup-metrics volume where pgBackRest and the
    backup wrapper expect them; every dependency names a service that runs (or is
    optional), and the schema migration waits for a primary behind HAProxy."""
    services = enabled_services(ha_document)
    assert "timescaledb" not in services
    # An overlay entry for a service the base lacks would make one with nothing to run.
    assert [name for name, s in services.items() if not {"image", "build"} & s.keys()] == []
    etcd = {name: s for name, s in services.items() if name.startswith("etcd-")}
    assert len(etcd) == 3
    cluster = {s["environment"]["ETCD_INITIAL_CLUSTER"] for s in etcd.values()}
    assert cluster == {",".join(f"{name}=http://{name}:2380" for name in sorted(etcd))}
    nodes = patroni_nodes(ha_document)
    assert len(nodes) == 3
    patroni = load_yaml(PATRONI / "patroni.yml")
    data_parent = str(Path(patroni["postgresql"]["data_dir"]).parent)
    repository = pgbackrest_settings()["global"]["repo1-path"]
    metrics_dir = re.search(r"BACKUP_METRICS_DIR:-([^}]+)}", BACKUP_SCRIPT.read_text())
    assert metrics_dir is not None
    data_volumes = set()
    for name, node in nodes.items():
        environment = node["environment"]
        assert environment["PATRONI_NAME"] == name
        assert environment["PATRONI_RESTAPI_CONNECT_ADDRESS"] == f"{name}:8008"
        assert environment["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{name}:5432"
        data_volumes.add(named_volume_at(node, data_parent))
        assert named_volume_at(node, repository) == "pgbackrest-repo", name
        assert named_volume_at(node, metrics_dir[1]) == "backup-metrics", name
        assert set(node["depends_on"]) == set(etcd), name
    assert len(data_volumes) == 3
    exporter = services["backup-metrics"]
    assert named_volume_at(exporter, metrics_dir[1]) == "backup-metrics"
    assert f"--collector.textfile.directory={metrics_dir[1]}" in command_of(exporter)
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in services or how.get("required") is False, f"{name} → {needed}"
    assert services["migrate"]["depends_on"]["haproxy"]["condition"] == "service_healthy"
    assert "healthcheck" in services["haproxy"]


def test_the_coreline_processes_reach_the_primary_through_haproxy(
    ha_document: dict[str, Any], local: Path
) -> None:
    """HAProxy's primary port checks Patroni's /primary on each node's REST port and
    its replica port /replica; every Coreline process reads database-ha.env last, whose
    URL names that primary port with the coreline role's password."""
    listeners = haproxy_listeners(HAPROXY_CONFIG)
    nodes = patroni_nodes(ha_document)
    rest_port = int(load_yaml(PATRONI / "patroni.yml")["restapi"]["listen"].rsplit(":", 1)[1])
    for name, check in (("primary", "/primary"), ("replicas", "/replica")):
        listener = listeners[name]
        assert listener.check == check
        assert {server.address for server in listener.servers} == {f"{n}:5432" for n in nodes}
        assert {server.check_port for server in listener.servers} == {rest_port}
    url = env_file_values(local / "database-ha.env")["CORELINE_DATABASE_URL"]
    password = (local / "postgres_password").read_text()
    assert url == (f"postgresql://coreline:{password}@haproxy:{listeners['primary'].port}/coreline")
    for subcommand in ("db", "gateway", "projector", "api"):
        for name, service in coreline_services(ha_document, subcommand).items():
            assert service["env_file"][-1] == "./local/database-ha.env", name
    for node in nodes.values():
        assert "postgres_password" in node["secrets"]


def test_haproxy_accepts_its_configuration(tmp_path: Path) -> None:
    """``haproxy -c`` accepts haproxy.cfg, warning only that the nodes' names do not
    resolve here (they are looked up at run time), and refuses a misspelt keyword."""
    haproxy = required_tool("haproxy", HAPROXY_MISSING)
    checked = run(haproxy, "-c", "-f", str(HAPROXY_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    warnings = [line for line in checked.stderr.splitlines() if "[WARNING]" in line]
    assert all("could not resolve address" in line for line in warnings), warnings
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(HAPROXY_CONFIG.read_text().replace("option httpchk", "option httpchek"))
    assert run(haproxy, "-c", "-f", str(broken)).returncode != 0


def test_haproxy_reports_no_primary_while_no_node_says_it_is_one(tmp_path: Path) -> None:
    """HAProxy run from haproxy.cfg (its ports moved) while no Patroni node answers:
    its /healthz answers 503, so the Compose health check keeps the migration and the
    processes after it waiting, and the check command itself fails."""
    haproxy = required_tool("haproxy", HAPROXY_MISSING)
    ports = {port: free_port() for port in (5000, 5001, 7000, 8404)}
    config = HAPROXY_CONFIG.read_text()
    for port, moved in ports.items():
        config = config.replace(f"bind *:{port}", f"bind 127.0.0.1:{moved}")
    (tmp_path / "haproxy.cfg").write_text(config)
    log = tmp_path / "haproxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [haproxy, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=output, stderr=output
        )
    try:
        for port in ports.values():
            wait_for_port(process, port, log)
        health = ["bash", "-c", _compose_health_check().replace("8404", str(ports[8404]))]
        failed = subprocess.run(health, capture_output=True, timeout=10, check=False)
        assert failed.returncode != 0
        with socket.create_connection(("127.0.0.1", ports[8404]), timeout=5) as connection:
            connection.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            answer = connection.recv(200)
        assert answer.startswith((b"HTTP/1.0 503", b"HTTP/1.1 503")), answer
    finally:
        process.terminate()
        process.wait(timeout=10)


def _compose_health_check() -> str:
    """The shell command of the HAProxy service's Compose health check."""
    test = load_yaml(HA_COMPOSE_FILE)["services"]["haproxy"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    command: str = test[3]
    return command


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real etcd on loopback, for Patroni's validator to reach (host:port)."""
    binary = required_tool("etcd", ETCD_MISSING)
    root = tmp_path_factory.mktemp("etcd")
    client, peer = free_port(), free_port()
    arguments = [
        binary, "--name=validate", f"--data-dir={root / 'data'}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=validate=http://127.0.0.1:{peer}",
    ]  # fmt: skip
    log = root / "etcd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(arguments, stdout=output, stderr=output)
    try:
        wait_for_port(process, client, log)
        yield f"127.0.0.1:{client}"
    finally:
        process.terminate()
        process.wait(timeout=15)


def validate_patroni(
    config: Path, environment: dict[str, str], etcd: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``patroni --validate-config`` as a node would run it, with what only makes sense
    inside the container moved here: etcd's address, free listening ports and an empty
    data directory."""
    patroni = required_tool("patroni", PATRONI_MISSING)
    moved = {
        "PATRONI_ETCD3_HOSTS": etcd,
        "PATRONI_RESTAPI_LISTEN": f"127.0.0.1:{free_port()}",
        "PATRONI_POSTGRESQL_LISTEN": f"127.0.0.1:{free_port()}",
        "PATRONI_POSTGRESQL_DATA_DIR": str(tmp_path / "pgdata"),
    }
    env = {"PATH": "/usr/bin:/bin", **environment, **moved}
    return subprocess.run(
        [patroni, "--validate-config", str(config)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_patroni_accepts_each_nodes_configuration(
    ha_document: dict[str, Any], local: Path, etcd: str, tmp_path: Path
) -> None:
    """``patroni --validate-config`` accepts patroni.yml with each node's environment
    from the overlay and the passwords init-secrets wrote, and refuses it without the
    rewind account (so the check does look)."""
    passwords = env_file_values(local / "patroni.env")
    assert set(passwords) >= {"PATRONI_SUPERUSER_PASSWORD", "PATRONI_REPLICATION_PASSWORD"}
    for name, node in patroni_nodes(ha_document).items():
        validated = validate_patroni(
            PATRONI / "patroni.yml", {**passwords, **node["environment"]}, etcd, tmp_path
        )
        assert validated.returncode == 0, f"{name}: {validated.stdout}{validated.stderr}"
    broken = load_yaml(PATRONI / "patroni.yml")
    del broken["postgresql"]["authentication"]["rewind"]
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    node = next(iter(patroni_nodes(ha_document).values()))
    refused = validate_patroni(tmp_path / "broken.yml", node["environment"], etcd, tmp_path)
    assert refused.returncode == 1
    assert "rewind" in refused.stderr


def test_patroni_replicates_synchronously_and_archives_where_pgbackrest_looks(
    ha_document: dict[str, Any],
) -> None:
    """patroni.yml turns synchronous replication on, names the etcd members of the
    overlay, archives and restores WAL through the stanza pgbackrest.conf defines, for
    the data directory, port and socket it gives PostgreSQL; the image copies every
    script to the path the configuration runs it from."""
    patroni = load_yaml(PATRONI / "patroni.yml")
    dcs = patroni["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True
    assert dcs["synchronous_mode_strict"] is True  # commits wait rather than go on alone
    assert dcs["synchronous_node_count"] == 1
    etcd_urls = {
        s["environment"]["ETCD_ADVERTISE_CLIENT_URLS"].removeprefix("http://")
        for name, s in enabled_services(ha_document).items()
        if name.startswith("etcd-")
    }
    assert set(patroni["etcd3"]["hosts"].split(",")) == etcd_urls
    pgbackrest = pgbackrest_settings()
    (stanza,) = set(pgbackrest) - {"global"}
    parameters = dcs["postgresql"]["parameters"]
    assert parameters["archive_mode"] == "on"
    assert f"--stanza={stanza} archive-push %p" in parameters["archive_command"]
    assert (
        f"--stanza={stanza} archive-get"
        in patroni["postgresql"]["recovery_conf"]["restore_command"]
    )
    assert f"--stanza={stanza} " in patroni["postgresql"]["pgbackrest"]["command"]
    postgresql = patroni["postgresql"]
    assert pgbackrest[stanza]["pg1-path"] == postgresql["data_dir"]
    assert pgbackrest[stanza]["pg1-port"] == postgresql["listen"].rsplit(":", 1)[1]
    assert (
        pgbackrest[stanza]["pg1-socket-path"] == postgresql["parameters"]["unix_socket_directories"]
    )
    dockerfile = (PATRONI / "Dockerfile").read_text()
    assert re.search(r"^FROM postgres:15\b", dockerfile, re.M)
    copies = dict(re.findall(r"^COPY (?:--chmod=\d+ )?(\S+) (\S+)$", dockerfile, re.M))
    assert all((PATRONI / source).is_file() for source in copies)
    installed = {Path(source).name: target for source, target in copies.items()}
    assert installed["pgbackrest.conf"] == "/etc/pgbackrest/pgbackrest.conf"
    assert patroni["bootstrap"]["post_bootstrap"] == installed["post-bootstrap.sh"]
    entrypoint = (PATRONI / "entrypoint.sh").read_text()
    assert f"exec patroni {installed['patroni.yml']}" in entrypoint
    assert f"{installed['backup.sh']} auto" in entrypoint
    assert installed["backup.sh"] in (PATRONI / "post-bootstrap.sh").read_text()
    assert f'ENTRYPOINT ["{installed["entrypoint.sh"]}"]' in dockerfile


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
        "CorelineDatabaseReplicationLag", "CorelineDatabaseNoSyncStandby",
        "CorelineDatabaseNoPrimary", "CorelineBackupFailed", "CorelineBackupStale",
    }  # fmt: skip
    assert wanted <= names
    database = {
        rule["alert"]
        for group in load_yaml(rules)["groups"]
        if group["name"] in {"coreline-database", "coreline-backup"}
        for rule in group["rules"]
    }
    cases = load_yaml(DEPLOY / "prometheus" / "alerts_test.yml")["tests"]
    fired = {case["alertname"] for test in cases for case in test["alert_rule_test"]
             if case["exp_alerts"]}  # fmt: skip
    assert database <= fired, f"rules no test sees firing: {sorted(database - fired)}"


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.ha.yml"])
def test_prometheus_configuration_passes_promtool(promtool: str, config: str) -> None:
    """promtool accepts both configurations, including the rule file they load."""
    checked = run(promtool, "check", "config", str(DEPLOY / "prometheus" / config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


def test_prometheus_with_the_ha_overlay_also_scrapes_patroni_and_the_backups(
    ha_document: dict[str, Any],
) -> None:
    """The overlay's Prometheus loads prometheus.ha.yml, which scrapes everything
    prometheus.yml does, each Patroni node's REST API and the backup metrics exporter."""
    prometheus = ha_document["services"]["prometheus"]
    (config_flag,) = [arg for arg in command_of(prometheus) if arg.startswith("--config.file=")]
    in_container = {mount.target: mount.source for mount in mounts(prometheus)}
    assert in_container[config_flag.split("=", 1)[1]] == "./prometheus/prometheus.ha.yml"
    single = prometheus_targets(load_yaml(DEPLOY / "prometheus" / "prometheus.yml"))
    targets = prometheus_targets(load_yaml(DEPLOY / "prometheus" / "prometheus.ha.yml"))
    assert all(targets[job] == found for job, found in single.items())
    assert targets["patroni"] == {f"{name}:8008/metrics" for name in patroni_nodes(ha_document)}
    assert targets["coreline-backup"] == {"backup-metrics:9100/metrics"}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "coreline.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_expressions() -> list[str]:
    groups = load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


@pytest.mark.parametrize("source", ["grafana dashboard", "alert rules"])
def test_dashboards_and_rules_use_only_metrics_the_code_defines(source: str) -> None:
    """Every coreline_* metric a panel or rule queries is defined by a prometheus-client
    metric in the code, or written by the backup wrapper: renaming a metric without its
    dashboard fails here."""
    expressions = dashboard_expressions() if source == "grafana dashboard" else rule_expressions()
    used = set().union(*(metric_names_in(expression) for expression in expressions))
    assert {name.split("_")[1] for name in used} >= {"gateway", "projector"}
    defined = exposed_metric_names().keys() | backup_metric_names()
    assert not used - defined, sorted(used - defined)


def test_database_rules_use_only_metrics_patroni_and_the_backup_wrapper_export() -> None:
    """Every patroni_* metric a rule queries is one Patroni's REST API serves (read from
    the installed Patroni's source), and every backup metric is one backup.sh writes."""
    expressions = rule_expressions()
    patroni_used = set().union(*(re.findall(r"\bpatroni_[a-z_]+\b", e) for e in expressions))
    assert {"patroni_primary", "patroni_sync_standby", "patroni_xlog_replayed_location"} <= (
        patroni_used
    )
    served = patroni_metric_names(required_tool("patroni", PATRONI_MISSING))
    assert not patroni_used - served, sorted(patroni_used - served)
    backup_used = {name for e in expressions for name in metric_names_in(e) if "_backup_" in name}
    assert backup_used
    assert backup_used <= backup_metric_names()


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


def test_the_base_runs_the_database_with_synchronous_replication_and_backups() -> None:
    """The base renders a CloudNativePG cluster of three instances on different nodes,
    each commit waiting for one standby, WAL archived and backed up to object storage
    every night; the placeholder database URL names its primary's Service."""
    rendered = render(K8S_BASE)
    cluster = find(rendered, "Cluster", "coreline-db")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["imageName"].endswith(":15")
    assert spec["postgresql"]["synchronous"]["method"] in {"any", "first"}
    assert spec["postgresql"]["synchronous"]["number"] == 1
    assert spec["postgresql"]["synchronous"]["dataDurability"] == "required"
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert spec["bootstrap"]["initdb"] == {"database": "coreline", "owner": "coreline"}
    assert spec["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    scheduled = find(rendered, "ScheduledBackup", "coreline-db-daily")
    assert scheduled["spec"]["cluster"]["name"] == "coreline-db"
    assert len(scheduled["spec"]["schedule"].split()) == 6  # seconds first
    annotations = spec["inheritedMetadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    placeholder = env_file_values(K8S_BASE / "secrets.example.env")["CORELINE_DATABASE_URL"]
    assert "@coreline-db-rw.coreline.svc:5432/coreline" in placeholder
