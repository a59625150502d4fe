"""The Helm chart (helm/distilld): lint-clean, renders manifests that the Kubernetes schemas accept
and a configuration that ``distilld check-config`` accepts, keeps secrets out of ConfigMaps.
(No cluster here: this checks what helm, the schemas and the daemon's own validation can check.)

helm comes from ``make helm-tools`` (into the virtualenv); kubernetes-validate from the test extra.
The CRD kinds (ServiceMonitor, PodMonitor, ScaledObject) are not in kubernetes-validate's schemas:
their fields are asserted here instead."""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from distilld.features import build_graders
from distilld.processor import DistilledProcessor
from distilld.settings import Settings

from .tls_tools import make_pki

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "distilld"
HELM = Path(sys.executable).parent / "helm"  # make helm-tools
CI_VALUES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
CASES = ["defaults", *CI_VALUES]
KUBERNETES_VERSION = "1.32.0"
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
}
FAKE_PASSWORD = "FAKE-sasl-pw-d1st1lld"
FAKE_USER_INFO = "registry-user:FAKE-registry-pw-d1st1lld"
# the Schema Registry's basic auth needs a registry to go with (test_registry_auth_without_a_registry_is_refused)
REGISTRY = ("config.format.value=avro_confluent", "config.format.schema_registry.url=http://schema-registry:8081")

pytestmark = pytest.mark.skipif(not HELM.is_file(), reason=f"no helm binary at {HELM}: run `make helm-tools`")

Manifest = dict[str, Any]


def _helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _values_args(case: str, sets: tuple[str, ...] = ()) -> list[str]:
    files = [] if case == "defaults" else ["-f", str(CHART / "ci" / case)]
    return files + [arg for s in sets for arg in ("--set", s)]


@functools.cache
def render(case: str = "defaults", *sets: str) -> tuple[Manifest, ...]:
    """The manifests ``helm template`` renders for a ci/ value file (or the defaults) plus --set overrides."""
    out = _helm("template", "rel", str(CHART), "--namespace", "streaming", *_values_args(case, sets)).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(docs: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def deployment(docs: tuple[Manifest, ...]) -> Manifest:
    (found,) = of_kind(docs, "Deployment")
    return found


def config_text(docs: tuple[Manifest, ...]) -> str:
    (config_map,) = [d for d in of_kind(docs, "ConfigMap") if "distilld.yaml" in d["data"]]
    text: str = config_map["data"]["distilld.yaml"]
    return text


def sidecar_snippet(docs: tuple[Manifest, ...]) -> dict[str, Any]:
    (snippet,) = [d for d in of_kind(docs, "ConfigMap") if "container.yaml" in d["data"]]
    return {key: yaml.safe_load(text) for key, text in snippet["data"].items()}


def distilld_container(docs: tuple[Manifest, ...]) -> Manifest:
    """The distilld container: the Deployment's, or in sidecar mode the snippet's."""
    if of_kind(docs, "Deployment"):
        (container,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    else:
        (container,) = sidecar_snippet(docs)["container.yaml"]
    return container


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["apiVersion"] == "v2" and chart["appVersion"] == version
    assert deployment(render())["spec"]["template"]["spec"]["containers"][0]["image"] == f"distilld:{version}"


def test_values_config_has_exactly_the_daemons_sections() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["config"]) == set(Settings.model_fields)
    repository_config = yaml.safe_load((ROOT / "config" / "distilld.yaml").read_text())
    assert set(values["config"]) == set(repository_config)


@pytest.mark.parametrize("case", CASES)
def test_lint_strict(case: str) -> None:
    result = _helm("lint", "--strict", str(CHART), *_values_args(case))
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("case", CASES)
def test_rendered_manifests_pass_kubernetes_schemas(case: str) -> None:
    import kubernetes_validate

    docs = render(case)
    assert of_kind(docs, "ConfigMap"), "every mode renders the configuration"
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == CRD_KINDS[doc["kind"]], name
            assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel", name
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{case}: {name}: {e.message} at {'.'.join(map(str, e.path))}")


def _check_config(docs: tuple[Manifest, ...], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``distilld check-config`` on the rendered file, as the pod would see it: the files mounted under
    /etc/distilld exist (in tmp_path), the variables from Secrets are set (to stand-ins)."""
    text = config_text(docs)
    mounted = {line.split(": ", 1)[1] for line in text.splitlines() if ": /etc/distilld/" in line}
    pki = make_pki(tmp_path / "pki")
    # the TLS files are loaded as the clients will load them: real ones
    real = {"ca.crt": pki.ca, "tls.crt": pki.client_cert, "tls.key": pki.client_key}
    for path in mounted:
        local = tmp_path / Path(path).relative_to("/etc/distilld")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("stand-in for a mounted Secret\n")
        if local.name in real:
            local.write_bytes(real[local.name].read_bytes())
    config = tmp_path / "distilld.yaml"
    config.write_text(text.replace("/etc/distilld/", f"{tmp_path}/"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLD_")}
    for var in distilld_container(docs).get("env", []):
        env[var["name"]] = var["value"] if "value" in var else f"stand-in:{var['valueFrom']['secretKeyRef']['key']}"
    distilld = Path(sys.executable).parent / "distilld"
    return subprocess.run(
        [str(distilld), "check-config", "--config", str(config)], capture_output=True, text=True, env=env, timeout=60
    )


def _is_masked(shown: str | None) -> bool:
    """check-config prints a secret it was given as stars (and a missing one as null)."""
    return bool(shown) and set(shown or "") == {"*"}


@pytest.mark.parametrize("case", CASES)
def test_rendered_config_passes_check_config(case: str, tmp_path: Path) -> None:
    result = _check_config(render(case), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tls_and_sasl_files_come_from_secrets(tmp_path: Path) -> None:
    docs = render("tls-sasl-values.yaml")
    kafka = yaml.safe_load(config_text(docs))["kafka"]
    assert kafka["ssl"] == {
        "ca_location": "/etc/distilld/tls/ca.crt",
        "certificate_location": "/etc/distilld/tls/tls.crt",
        "key_location": "/etc/distilld/tls/tls.key",
        "key_password_file": "/etc/distilld/tls/key-password",
    }
    assert kafka["sasl"] == {
        "mechanism": "SCRAM-SHA-512",
        "username": "distilld",
        "password_file": "/etc/distilld/sasl/password",
    }
    spec = deployment(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["distilld-tls"]["secret"]["secretName"] == "distilld-kafka-tls"
    tls_files = {i["key"] for i in volumes["distilld-tls"]["secret"]["items"]}
    assert tls_files == {"ca.crt", "tls.crt", "tls.key", "key-password"}
    assert volumes["distilld-sasl"]["secret"] == {
        "secretName": "distilld-kafka-scram",
        "defaultMode": 0o444,
        "items": [{"key": "password", "path": "password"}],
    }
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["distilld-tls"] == "/etc/distilld/tls" and mounts["distilld-sasl"] == "/etc/distilld/sasl"
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["DISTILLD_FORMAT__SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO"]["valueFrom"]["secretKeyRef"] == {
        "name": "distilld-schema-registry",
        "key": "user-info",
    }
    # the check is real: the daemon read the password file and saw the registry credentials
    shown = json.loads(_check_config(docs, tmp_path).stdout)
    assert _is_masked(shown["kafka"]["sasl"]["password"])
    assert _is_masked(shown["format"]["schema_registry"]["basic_auth_user_info"])


def test_sasl_password_from_env_reaches_the_daemon(tmp_path: Path) -> None:
    docs = render("sasl-env-values.yaml")
    assert "password" not in yaml.safe_load(config_text(docs))["kafka"]["sasl"]
    (var,) = [e for e in distilld_container(docs)["env"] if e["name"] == "DISTILLD_KAFKA__SASL__PASSWORD"]
    assert var["valueFrom"]["secretKeyRef"] == {"name": "distilld-kafka-plain", "key": "kafka-password"}
    result = _check_config(docs, tmp_path)
    assert result.returncode == 0 and _is_masked(json.loads(result.stdout)["kafka"]["sasl"]["password"])


@pytest.mark.parametrize("mode", ["passwordFrom=file", "passwordFrom=env", "sidecar"])
def test_no_secret_value_in_any_config_map(mode: str) -> None:
    sets = [
        "config.kafka.security_protocol=SASL_PLAINTEXT",
        "config.kafka.sasl.mechanism=SCRAM-SHA-256",
        "config.kafka.sasl.username=distilld",
        f"sasl.password={FAKE_PASSWORD}",
        f"schemaRegistry.basicAuth.userInfo={FAKE_USER_INFO}",
        *REGISTRY,
        "sasl.passwordFrom=env" if mode == "passwordFrom=env" else "sasl.passwordFrom=file",
        f"sidecar.enabled={str(mode == 'sidecar').lower()}",
    ]
    docs = render("defaults", *sets)
    forms = [FAKE_PASSWORD, base64.b64encode(FAKE_PASSWORD.encode()).decode(), FAKE_USER_INFO.split(":")[1]]
    for config_map in of_kind(docs, "ConfigMap"):
        dumped = yaml.safe_dump(config_map)
        assert not [form for form in forms if form in dumped], config_map["metadata"]["name"]
    secrets = {s["metadata"]["name"]: s["data"] for s in of_kind(docs, "Secret")}
    assert base64.b64decode(secrets["rel-distilld-sasl"]["password"]).decode() == FAKE_PASSWORD
    assert base64.b64decode(secrets["rel-distilld-schema-registry"]["user-info"]).decode() == FAKE_USER_INFO
    container = distilld_container(docs)
    references = yaml.safe_dump(container) + yaml.safe_dump(of_kind(docs, "Deployment") or sidecar_snippet(docs))
    assert "rel-distilld-sasl" in references and "rel-distilld-schema-registry" in references


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("config.kafka.sasl.password=hunter2", "sasl.existingSecret"),
        ("config.kafka.ssl.key_password=hunter2", "tls.keyPasswordKey"),
        ("config.format.schema_registry.basic_auth_user_info=u:hunter2", "schemaRegistry.basicAuth.existingSecret"),
        # the librdkafka settings passed through as-is
        (r"config.kafka.consumer.sasl\.password=hunter2", "env DISTILLD_KAFKA__CONSUMER__sasl.password"),
        (r"config.kafka.consumer.ssl\.key\.password=hunter2", "tls.keyPasswordKey"),
        (
            r"config.kafka.producer.ssl\.keystore\.password=hunter2",
            "env DISTILLD_KAFKA__PRODUCER__ssl.keystore.password",
        ),
        (r"config.kafka.producer.SASL\.OAUTHBEARER\.CLIENT\.SECRET=hunter2", "valueFrom.secretKeyRef"),
        (r"config.kafka.consumer.ssl\.key\.pem=hunter2", "tls.existingSecret"),
    ],
)
def test_inline_secrets_in_config_are_refused(setting: str, field: str) -> None:
    result = _helm("template", "rel", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0 and field in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_librdkafka_secret_from_env_reaches_the_daemon(tmp_path: Path) -> None:
    """The way the refusal points to: the pass-through key as a DISTILLD_KAFKA__CONSUMER__<key> variable
    from a Secret. A setting that only names where a secret is (a URL) stays in the ConfigMap."""
    import kubernetes_validate

    docs = render(
        "defaults",
        "env[0].name=DISTILLD_KAFKA__CONSUMER__ssl.keystore.password",
        "env[0].valueFrom.secretKeyRef.name=kafka-keystore",
        "env[0].valueFrom.secretKeyRef.key=password",
        r"config.kafka.consumer.sasl\.oauthbearer\.token\.endpoint\.url=https://idp.example/token",
    )
    consumer = yaml.safe_load(config_text(docs))["kafka"]["consumer"]
    assert consumer["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/token"
    assert "ssl.keystore.password" not in consumer
    kubernetes_validate.validate(deployment(docs), KUBERNETES_VERSION, strict=True)  # dots are allowed in the name
    result = _check_config(docs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _is_masked(json.loads(result.stdout)["kafka"]["consumer"]["ssl.keystore.password"])


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_secret_without_a_tls_protocol_is_refused(protocol: str) -> None:
    """The daemon gives librdkafka the ssl files only with SSL or SASL_SSL: a TLS Secret with a plaintext
    protocol would be mounted and unused, the connection in plaintext."""
    sets = ["--set", "tls.existingSecret=kafka-tls", "--set", f"config.kafka.security_protocol={protocol}"]
    result = _helm("template", "rel", str(CHART), *sets, check=False)
    assert result.returncode != 0 and f"security_protocol is {protocol}" in result.stderr, result.stderr
    tls = "config.kafka.security_protocol=" + protocol.replace("PLAINTEXT", "SSL")
    kafka = yaml.safe_load(config_text(render("defaults", "tls.existingSecret=kafka-tls", tls)))["kafka"]
    assert kafka["ssl"]["ca_location"] == "/etc/distilld/tls/ca.crt"


def test_tls_secret_for_the_schema_registry_only_is_allowed() -> None:
    """The documented way to give a Schema Registry's CA: tls.existingSecret and a path under
    /etc/distilld/tls, with Kafka itself in plaintext. The Kafka ssl paths are then left out."""
    docs = render(
        "defaults",
        "tls.existingSecret=registry-ca",
        "config.format.value=avro_confluent",
        "config.format.schema_registry.url=https://schema-registry:8081",
        "config.format.schema_registry.ssl_ca_location=/etc/distilld/tls/ca.crt",
    )
    config = yaml.safe_load(config_text(docs))
    assert config["kafka"]["security_protocol"] == "PLAINTEXT" and "ssl" not in config["kafka"]
    assert config["format"]["schema_registry"]["ssl_ca_location"] == "/etc/distilld/tls/ca.crt"
    volumes = {v["name"]: v for v in deployment(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["distilld-tls"]["secret"]["secretName"] == "registry-ca"


@pytest.mark.parametrize(
    "args",
    [
        ("--set", "livenessProbe.httpGet.path=/x"),
        ("--set-json", 'livenessProbe={"exec":{"command":["true"]}}'),
        ("--set", "readinessProbe.tcpSocket.port=9108"),
    ],
)
def test_probe_values_set_the_timing_only(args: tuple[str, str]) -> None:
    """The handler is the chart's: an httpGet from the values was merged into it (a path with no port), exec or
    tcpSocket made a second handler, which the API server refuses. The timing fields still go through."""
    result = _helm("template", "rel", str(CHART), *args, check=False)
    assert result.returncode != 0 and "only its timing can be set" in result.stderr, result.stderr
    container = distilld_container(render("defaults", "livenessProbe.periodSeconds=30"))
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["livenessProbe"]["periodSeconds"] == 30


def test_registry_auth_without_a_registry_is_refused(tmp_path: Path) -> None:
    """The user:password variable alone, with format json, made distilld refuse its config
    (format.schema_registry.url: Field required): the pod crash-looped."""
    for sets in [
        ("schemaRegistry.basicAuth.existingSecret=s",),
        (f"schemaRegistry.basicAuth.userInfo={FAKE_USER_INFO}",),
    ]:
        for extra in [(), ("config.format.value=avro_confluent",), (REGISTRY[1],)]:
            result = _helm("template", "rel", str(CHART), *_values_args("defaults", (*sets, *extra)), check=False)
            assert result.returncode != 0 and "config.format.schema_registry.url" in result.stderr, (sets, extra)
    docs = render("defaults", "schemaRegistry.basicAuth.existingSecret=s", *REGISTRY)
    names = {e["name"] for e in distilld_container(docs)["env"]}
    assert "DISTILLD_FORMAT__SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO" in names
    assert _check_config(docs, tmp_path).returncode == 0
    from_env = ("config.format.value=avro_confluent", "env[0].name=DISTILLD_FORMAT__SCHEMA_REGISTRY__URL")
    render("defaults", "schemaRegistry.basicAuth.existingSecret=s", *from_env, "env[0].value=http://r:8081")
    # the format and the registry from env in any case and form, or from envFrom's Secrets, which the chart
    # cannot read: not refused
    both = ("env[0].name=distilld_format__value", "env[0].value=avro_confluent",
            "env[1].name=DISTILLD_FORMAT__SCHEMA_REGISTRY", "env[1].value=a JSON section")  # fmt: skip
    render("defaults", "schemaRegistry.basicAuth.existingSecret=s", *both)
    render("defaults", "schemaRegistry.basicAuth.existingSecret=s", "envFrom[0].secretRef.name=registry")


def test_probe_fields_the_api_server_refuses_are_refused() -> None:
    """terminationGracePeriodSeconds on a readiness probe, a liveness successThreshold other than 1."""
    for sets in [("readinessProbe.terminationGracePeriodSeconds=5",), ("livenessProbe.successThreshold=2",)]:
        result = _helm("template", "rel", str(CHART), *_values_args("defaults", sets), check=False)
        assert result.returncode != 0, sets
    container = distilld_container(render("defaults", "livenessProbe.terminationGracePeriodSeconds=5"))
    assert container["livenessProbe"]["terminationGracePeriodSeconds"] == 5


@pytest.mark.parametrize(
    "sets", [("securityContext.runAsUser=0",), ("securityContext.runAsUser=0", "sidecar.enabled=true")]
)
def test_root_user_with_run_as_non_root_is_refused(sets: tuple[str, ...]) -> None:
    """The kubelet refuses a container whose runAsUser is 0 while runAsNonRoot is true; no render showed it."""
    result = _helm("template", "rel", str(CHART), *_values_args("defaults", sets), check=False)
    assert result.returncode != 0 and "runAsNonRoot" in result.stderr, result.stderr
    root = ("securityContext.runAsNonRoot=false", "podSecurityContext.runAsNonRoot=false")
    assert distilld_container(render("defaults", *sets, *root))["securityContext"]["runAsUser"] == 0
    # the container's 10001 wins over the pod's 0
    assert (
        distilld_container(render("defaults", "podSecurityContext.runAsUser=0"))["securityContext"]["runAsUser"]
        == 10001
    )


def test_deployment_probes_and_security_context() -> None:
    spec = deployment(render())["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9108, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["args"] == ["run", "--config", "/etc/distilld/distilld.yaml"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["runAsUser"] == 10001
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert {"name": "distilld-tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "emptyDir" in volumes["distilld-tmp"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


@pytest.mark.parametrize(("case", "shutdown"), [("defaults", 30), ("exactly-once-values.yaml", 60)])
def test_grace_period_is_above_the_shutdown_deadline(case: str, shutdown: int) -> None:
    docs = render(case)
    assert yaml.safe_load(config_text(docs))["processing"]["shutdown_timeout_s"] == shutdown
    assert deployment(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > shutdown
    result = _helm("template", "rel", str(CHART), "--set", "terminationGracePeriodSeconds=30", check=False)
    assert result.returncode != 0 and "shutdown_timeout_s" in result.stderr


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("DISTILLD_METRICS__PORT", "config.metrics.port"),
        ("distilld_metrics__host", "config.metrics.host"),  # the daemon reads the names case-insensitively
        ("DISTILLD_PROCESSING__SHUTDOWN_TIMEOUT_S", "config.processing.shutdown_timeout_s"),
        ("DISTILLD_KAFKA__SECURITY_PROTOCOL", "config.kafka.security_protocol"),
        ("DISTILLD_PROCESSING", "config.processing"),  # a whole section, as JSON
    ],
)
def test_env_cannot_override_what_the_pod_spec_is_derived_from(name: str, field: str) -> None:
    """The port, probes, grace period and TLS/SASL checks follow `config`; an env variable would change
    the daemon's value behind them (the environment overrides the file)."""
    result = _helm(
        "template", "rel", str(CHART), "--set", f"env[0].name={name}", "--set-string", "env[0].value=1", check=False
    )
    assert result.returncode != 0 and f"set {field} in the values instead" in result.stderr, result.stderr
    allowed = distilld_container(render("defaults", "env[0].name=DISTILLD_REDUCER__RATE", "env[0].value=0.2"))
    assert "DISTILLD_REDUCER__RATE" in {e["name"] for e in allowed["env"]}


def test_a_transactional_id_shared_by_every_pod_is_refused() -> None:
    """The ConfigMap is every pod's: one transactional id there, and the pods' producers fence each other."""
    shared = ("config.processing.guarantee=exactly_once", "config.kafka.transactional_id=distilld-0")
    result = _helm("template", "rel", str(CHART), *_values_args("defaults", shared), check=False)
    assert result.returncode != 0 and "config.kafka.transactional_id" in result.stderr, result.stderr
    kafka = yaml.safe_load(config_text(render("exactly-once-values.yaml")))["kafka"]
    assert "transactional_id" not in kafka, "the default, one per pod"


def test_metrics_host_is_reachable_and_wins_over_the_images_default() -> None:
    for loopback in ("127.0.0.1", "localhost", "::1"):
        result = _helm("template", "rel", str(CHART), "--set", f"config.metrics.host={loopback}", check=False)
        assert result.returncode != 0 and "config.metrics.host" in result.stderr, loopback
    for case, sets, host in [
        ("defaults", (), "0.0.0.0"),
        ("defaults", ("config.metrics.host=::",), "::"),  # an IPv6-only cluster
        ("sidecar-values.yaml", ("config.metrics.host=::",), "::"),
    ]:
        docs = render(case, *sets)
        assert yaml.safe_load(config_text(docs))["metrics"]["host"] == host
        # the image sets DISTILLD_METRICS__HOST=0.0.0.0, which would otherwise override the file
        env = {e["name"]: e.get("value") for e in distilld_container(docs)["env"]}
        assert env["DISTILLD_METRICS__HOST"] == host, case


def test_config_checksum_rolls_pods_on_config_change_only() -> None:
    def checksum(*sets: str) -> str:
        annotation: str = deployment(render("defaults", *sets))["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]
        return annotation

    assert len(checksum()) == 64
    assert checksum("config.reducer.rate=0.2") != checksum()
    tls = "config.kafka.security_protocol=SSL"
    assert checksum(tls, "tls.existingSecret=kafka-tls") != checksum(tls), "the mounted paths are part of the config"
    assert checksum("replicas=3") == checksum()


def test_secret_checksum_rolls_pods_when_a_chart_secret_changes() -> None:
    """distilld reads its secrets at start only: a new sasl.password or userInfo must roll the pods."""
    sasl = (
        "config.kafka.security_protocol=SASL_PLAINTEXT",
        "config.kafka.sasl.mechanism=SCRAM-SHA-256",
        "config.kafka.sasl.username=distilld",
        *REGISTRY,
    )

    def annotations(*sets: str) -> dict[str, str]:
        docs = render("defaults", *sasl, *sets)
        if of_kind(docs, "Deployment"):
            found: dict[str, str] = deployment(docs)["spec"]["template"]["metadata"]["annotations"]
            return found
        return dict(sidecar_snippet(docs)["podAnnotations.yaml"])

    first = annotations(f"sasl.password={FAKE_PASSWORD}")["checksum/secret"]
    assert len(first) == 64
    assert annotations("sasl.password=another")["checksum/secret"] != first
    assert annotations(f"sasl.password={FAKE_PASSWORD}", "replicas=3")["checksum/secret"] == first
    registry = annotations(f"schemaRegistry.basicAuth.userInfo={FAKE_USER_INFO}")["checksum/secret"]
    assert annotations("schemaRegistry.basicAuth.userInfo=u:other")["checksum/secret"] != registry
    sidecar = annotations(f"sasl.password={FAKE_PASSWORD}", "sidecar.enabled=true")
    assert sidecar["checksum/secret"] != annotations("sasl.password=another", "sidecar.enabled=true")["checksum/secret"]
    # Secrets the chart does not create: nothing to watch (helm/README.md says how to roll them)
    assert "checksum/secret" not in annotations("sasl.existingSecret=kafka-sasl")
    assert "checksum/secret" not in annotations()


def test_custom_config_is_rendered_as_given() -> None:
    config = yaml.safe_load(config_text(render("exactly-once-values.yaml")))
    assert config["processing"]["guarantee"] == "exactly_once"
    assert config["kafka"]["input_pattern"] == r"^clicks\..+"
    assert "input_topics" not in config["kafka"], "null removes a default"
    assert "dlq_topic" not in config["kafka"], "on_error: skip, no DLQ"


def test_keda_owns_the_replica_count_up_to_the_partition_count() -> None:
    assert deployment(render())["spec"]["replicas"] == 1
    assert not of_kind(render(), "ScaledObject")
    docs = render("keda-values.yaml")
    assert "replicas" not in deployment(docs)["spec"]
    (scaled,) = of_kind(docs, "ScaledObject")
    partitions = yaml.safe_load((CHART / "ci" / "keda-values.yaml").read_text())["keda"]["partitionCount"]
    assert scaled["spec"]["maxReplicaCount"] == partitions
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rel-distilld"}
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and trigger["authenticationRef"] == {"name": "kafka-trigger-auth"}
    config = yaml.safe_load(config_text(docs))["kafka"]
    assert trigger["metadata"]["bootstrapServers"] == config["bootstrap_servers"]
    assert trigger["metadata"]["consumerGroup"] == config["group_id"]
    assert trigger["metadata"]["topic"] == config["input_topics"][0]
    assert trigger["metadata"]["lagThreshold"] == "5000"
    explicit = of_kind(render("keda-values.yaml", "keda.maxReplicaCount=6"), "ScaledObject")[0]
    assert explicit["spec"]["maxReplicaCount"] == 6


def test_keda_scales_on_the_lag_of_every_input_topic() -> None:
    """KEDA's `topic` confines the lag (and the partition cap) to that one topic: with several input
    topics it is left out, and KEDA sums the lag of every topic the group consumes."""
    (scaled,) = of_kind(render("keda-values.yaml", "config.kafka.input_topics={app.events,app.errors}"), "ScaledObject")
    assert "topic" not in scaled["spec"]["triggers"][0]["metadata"]
    pattern = ("config.kafka.input_topics=null", "config.kafka.input_pattern=^app[.]")
    (by_pattern,) = of_kind(render("keda-values.yaml", *pattern), "ScaledObject")
    assert "topic" not in by_pattern["spec"]["triggers"][0]["metadata"]


@pytest.mark.parametrize(
    ("sets", "refused"),
    [
        (("config.kafka.security_protocol=SSL",), True),
        (("config.kafka.security_protocol=SSL", "keda.extraMetadata.tls=enable"), False),
        (("config.kafka.security_protocol=SASL_SSL", "keda.extraMetadata.tls=enable"), True),  # the password?
        (("config.kafka.security_protocol=SASL_PLAINTEXT", "keda.authenticationRef.name=kafka-auth"), False),
    ],
)
def test_keda_needs_authentication_for_tls_and_sasl_brokers(sets: tuple[str, ...], refused: bool) -> None:
    """A trigger without a TriggerAuthentication connects in plaintext: against TLS or SASL brokers it
    never reads the lag, and the Deployment is never scaled."""
    sasl = ("config.kafka.sasl.username=distilld", "sasl.existingSecret=kafka-sasl") if "SASL" in sets[0] else ()
    args = _values_args("defaults", ("keda.enabled=true", *sets, *sasl))
    result = _helm("template", "rel", str(CHART), *args, check=False)
    assert (result.returncode != 0) is refused, result.stderr
    assert ("keda.authenticationRef" in result.stderr) is refused


def test_keda_reads_the_connection_the_daemon_uses_from_the_container() -> None:
    """An ``env`` entry overrides the config file for the daemon; the trigger used to keep scaling on the
    config file's cluster and group. Variables from ``envFrom`` are named through keda.*FromEnv."""
    env = (
        "env[0].name=DISTILLD_KAFKA__BOOTSTRAP_SERVERS",
        "env[0].value=kafka.prod:9092",
        "env[1].name=DISTILLD_KAFKA__GROUP_ID",
        "env[1].value=distilld-prod",
    )
    (trigger,) = of_kind(render("keda-values.yaml", *env), "ScaledObject")[0]["spec"]["triggers"]
    meta = trigger["metadata"]
    assert meta["bootstrapServersFromEnv"] == "DISTILLD_KAFKA__BOOTSTRAP_SERVERS" and "bootstrapServers" not in meta
    assert meta["consumerGroupFromEnv"] == "DISTILLD_KAFKA__GROUP_ID" and "consumerGroup" not in meta
    named = (
        "envFrom[0].secretRef.name=kafka-connection",
        "keda.bootstrapServersFromEnv=KAFKA_BOOTSTRAP",
        "keda.topicFromEnv=KAFKA_TOPIC",
    )
    (trigger,) = of_kind(render("keda-values.yaml", *named), "ScaledObject")[0]["spec"]["triggers"]
    meta = trigger["metadata"]
    assert meta["bootstrapServersFromEnv"] == "KAFKA_BOOTSTRAP" and meta["topicFromEnv"] == "KAFKA_TOPIC"
    assert "bootstrapServers" not in meta and "topic" not in meta
    assert meta["consumerGroup"] == yaml.safe_load(config_text(render("keda-values.yaml")))["kafka"]["group_id"]
    # names are case-insensitive for the daemon; an entry without a name renders; topics from env drop `topic`
    loose = ("env[0].name=distilld_kafka__group_id", "env[0].value=g", "env[1].value=x",
             "env[2].name=DISTILLD_KAFKA__INPUT_PATTERN", "env[2].value=^app[.]")  # fmt: skip
    (trigger,) = of_kind(render("keda-values.yaml", *loose), "ScaledObject")[0]["spec"]["triggers"]
    meta = trigger["metadata"]
    assert meta["consumerGroupFromEnv"] == "distilld_kafka__group_id" and "topic" not in meta
    # KEDA does not read fieldRef variables: refused, not silently scaled on the config file's group
    field_ref = ("env[0].name=DISTILLD_KAFKA__GROUP_ID", "env[0].valueFrom.fieldRef.fieldPath=metadata.name")
    result = _helm("template", "rel", str(CHART), *_values_args("keda-values.yaml", field_ref), check=False)
    assert result.returncode != 0 and "set keda.consumerGroup" in result.stderr, result.stderr


def test_monitors_scrape_the_metrics_port() -> None:
    docs = render("monitors-values.yaml")
    (service,) = of_kind(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics" and service["spec"]["ports"][0]["port"] == 9108
    (service_monitor,) = of_kind(docs, "ServiceMonitor")
    (pod_monitor,) = of_kind(docs, "PodMonitor")
    selector = deployment(docs)["spec"]["selector"]["matchLabels"]
    assert service_monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"] == selector
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert pod_monitor["spec"]["selector"]["matchLabels"] == selector
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    for monitor, endpoints in ((service_monitor, "endpoints"), (pod_monitor, "podMetricsEndpoints")):
        # the alert rules (DistilldDown) and the dashboard select job="distilld", not the release's name
        assert {"targetLabel": "job", "replacement": "distilld"} in monitor["spec"][endpoints][0]["relabelings"]
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["streaming"]}
    assert not of_kind(render(), "ServiceMonitor") and not of_kind(render(), "PodMonitor")


def test_pod_disruption_budget_defaults_to_one_unavailable() -> None:
    (pdb,) = of_kind(render(), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    # readiness follows the brokers: in a Kafka outage no pod is healthy, and IfHealthyBudget would block drains
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    (custom,) = of_kind(render("resources-affinity-values.yaml"), "PodDisruptionBudget")
    assert custom["spec"] == {
        "selector": pdb["spec"]["selector"],
        "minAvailable": 2,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    (default_policy,) = of_kind(
        render("defaults", "podDisruptionBudget.unhealthyPodEvictionPolicy=IfHealthyBudget"), "PodDisruptionBudget"
    )
    assert default_policy["spec"]["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"


def test_dashboard_copy_is_identical_and_labelled() -> None:
    copy = (CHART / "dashboards" / "distilld.json").read_bytes()
    assert copy == (ROOT / "config" / "grafana" / "distilld.json").read_bytes(), (
        "helm/distilld/dashboards/distilld.json must be a copy of config/grafana/distilld.json"
    )
    (dashboard,) = [d for d in render("dashboard-values.yaml") if d["metadata"]["name"] == "rel-distilld-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert json.loads(dashboard["data"]["distilld.json"]) == json.loads(copy)
    assert not [d for d in render() if d["metadata"]["name"] == "rel-distilld-dashboard"]


def test_prometheus_rule_is_the_repositorys_alerts() -> None:
    """The alerts for Prometheus Operator users, who load rules from PrometheusRule objects only."""
    copy = (CHART / "alerts" / "alerts.yml").read_bytes()
    assert copy == (ROOT / "config" / "prometheus" / "alerts.yml").read_bytes(), (
        "helm/distilld/alerts/alerts.yml must be a copy of config/prometheus/alerts.yml"
    )
    (rule,) = of_kind(
        render("defaults", "prometheusRule.enabled=true", "prometheusRule.labels.release=kps"), "PrometheusRule"
    )
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(copy)
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"DistilldDown", "DistilldNoProgress"} <= alerts, alerts
    assert not of_kind(render(), "PrometheusRule")


def test_sidecar_renders_config_maps_only() -> None:
    everything_on = ("keda.enabled=true", "serviceMonitor.enabled=true", "podMonitor.enabled=true")
    docs = render("sidecar-values.yaml", *everything_on)
    assert {d["kind"] for d in docs} == {"ConfigMap"}
    assert {d["metadata"]["name"] for d in docs} == {"rel-distilld", "rel-distilld-sidecar"}


def test_sidecar_snippet_makes_a_valid_pod_next_to_an_existing_container() -> None:
    """What helm/README.md tells users to do: append container.yaml and volumes.yaml to their pod spec."""
    import kubernetes_validate

    docs = render("sidecar-values.yaml")
    snippet = sidecar_snippet(docs)
    readme = (ROOT / "helm" / "README.md").read_text()
    workload = yaml.safe_load(readme.split("```yaml\n# the existing workload\n", 1)[1].split("```", 1)[0])
    pod = workload["spec"]["template"]
    pod["spec"]["containers"] += snippet["container.yaml"]
    pod["spec"].setdefault("volumes", []).extend(snippet["volumes.yaml"])
    pod["metadata"].setdefault("annotations", {}).update(snippet["podAnnotations.yaml"])
    kubernetes_validate.validate(workload, KUBERNETES_VERSION, strict=True)
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "distilld"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["runAsUser"] == 10001, "set on the container: the host pod may run as anyone"
    mounted = {m["name"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])}
    assert mounted <= {v["name"] for v in pod["spec"]["volumes"]}
    config_map = {v["name"]: v for v in snippet["volumes.yaml"]}["distilld-config"]["configMap"]["name"]
    assert config_map in {d["metadata"]["name"] for d in docs}
    shutdown = yaml.safe_load(config_text(docs))["processing"]["shutdown_timeout_s"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > shutdown
    assert "sidecar.enabled=true" in readme and "container.yaml" in readme and "volumes.yaml" in readme


def test_readme_names_the_sidecar_config_map_and_relabels_job_for_sidecars() -> None:
    """helm/README.md's kubectl commands name the ConfigMap the chart renders, and its PodMonitor for
    sidecars sets job="distilld" as the chart's monitors do (DistilldDown is up{job="distilld"} == 0)."""
    readme = (ROOT / "helm" / "README.md").read_text()
    release = "app-distilld"
    out = _helm("template", release, str(CHART), "--set", "sidecar.enabled=true").stdout
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap"}
    assert names == {release, f"{release}-sidecar"}
    assert f"get configmap {release}-sidecar " in readme and "<fullname>-sidecar" in readme
    assert "<release>-distilld-sidecar" not in readme
    monitors = [yaml.safe_load(block.split("```", 1)[0]) for block in readme.split("```yaml\n")[1:]]
    (pod_monitor,) = [m for m in monitors if isinstance(m, dict) and m.get("kind") == "PodMonitor"]
    (chart_monitor,) = of_kind(render("monitors-values.yaml"), "PodMonitor")
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["relabelings"] == chart_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"targetLabel": "job", "replacement": "distilld"} in endpoint["relabelings"]
    alerts = (ROOT / "config" / "prometheus" / "alerts.yml").read_text()
    assert 'up{job="distilld"} == 0' in alerts


def test_sidecar_has_no_readiness_probe_unless_asked() -> None:
    """/readyz is 503 while Kafka is unreachable: in a shared pod that would make the user's application
    unready too, so the sidecar keeps the liveness probe only, unless sidecar.readinessProbe."""
    container = distilld_container(render("sidecar-values.yaml"))
    assert "readinessProbe" not in container
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    opted_in = distilld_container(render("sidecar-values.yaml", "sidecar.readinessProbe=true"))
    assert opted_in["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert "readinessProbe" in distilld_container(render()), "distilld's own Deployment keeps it"


def test_values_schema_refuses_unknown_and_invalid_values() -> None:
    typo = _helm("template", "rel", str(CHART), "--set", "replica=2", check=False)
    assert typo.returncode != 0 and "replica" in typo.stderr
    protocol = _helm("template", "rel", str(CHART), "--set", "config.kafka.security_protocol=TLS", check=False)
    assert protocol.returncode != 0 and "security_protocol" in protocol.stderr


def test_config_typo_is_caught_by_check_config(tmp_path: Path) -> None:
    result = _check_config(render("defaults", "config.reducer.rat=0.2"), tmp_path)
    assert result.returncode != 0 and "reducer.rat" in result.stdout + result.stderr


def _mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize(
    ("case", "partitions"),
    [
        ("defaults", 2),  # values.yaml: "the defaults fit the default config with up to two partitions per pod"
        ("resources-affinity-values.yaml", 6),  # its comment: 12 partitions, 6 a pod with one of three away
    ],
)
def test_memory_limit_holds_the_configured_windows(case: str, partitions: int) -> None:
    """The windows are fixed by the configuration (max_keys × bytes a key, as check-config prints it),
    so each example's limit is checked against what its own config implies, env overrides included."""
    docs = render(case)
    config = yaml.safe_load(config_text(docs))
    reducer = config["reducer"]
    container = distilld_container(docs)
    env = {e["name"].upper(): e.get("value") for e in container.get("env", [])}
    max_keys = int(env.get("DISTILLD_REDUCER__MAX_KEYS", reducer["max_keys"]))
    per_key = DistilledProcessor(
        build_graders(config["features"]), reducer["window_seconds"], reducer["rate"], panes=reducer["panes"]
    ).bytes_per_key
    limit = _mib(container["resources"]["limits"]["memory"])
    assert 200 + partitions * max_keys * per_key / 2**20 <= limit, (per_key, max_keys, limit)


def test_a_release_of_another_stream_inherits_no_example_topics_or_filters(tmp_path: Path) -> None:
    """Helm merges `config` key by key: whatever values.yaml sets under kafka or filters, every release
    gets unless it removes it. So the chart sets no state topic, DLQ topic or filters of an example: two
    releases must not share one snapshot store, nor drop records by another stream's rules."""
    clicks = (
        "config.kafka.group_id=clicks",
        "config.kafka.input_topics={clicks}",
        "config.kafka.output_topic=clicks.sampled",
    )
    docs = render("defaults", *clicks)
    config = yaml.safe_load(config_text(docs))
    assert "state_topic" not in config["kafka"], "the daemon derives <group_id>.distilld-state"
    assert config["kafka"]["dlq_topic"] == "clicks.distilld-dlq", "on_error: dlq needs one: the release's own"
    assert not (config.get("filters") or {}).get("drop") and not (config.get("filters") or {}).get("keep_always")
    result = _check_config(docs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"state_topic": "clicks.distilld-state"' in result.stdout, result.stdout
    # a DLQ topic given, or none wanted, is left as it is
    given = yaml.safe_load(config_text(render("defaults", *clicks, "config.kafka.dlq_topic=clicks.bad")))
    assert given["kafka"]["dlq_topic"] == "clicks.bad"
    skipped = yaml.safe_load(config_text(render("defaults", *clicks, "config.processing.on_error=skip")))
    assert "dlq_topic" not in skipped["kafka"]
    # the group the daemon runs as comes from `env` when set there (as KEDA's trigger reads it)
    env = ("env[0].name=distilld_kafka__group_id", "env[0].value=clicks-prod")
    overridden = yaml.safe_load(config_text(render("defaults", *clicks, *env)))
    assert overridden["kafka"]["dlq_topic"] == "clicks-prod.distilld-dlq"
    # from a Secret or a fieldRef the chart cannot read it: a DLQ must be named
    secret = ("env[0].name=DISTILLD_KAFKA__GROUP_ID", "env[0].valueFrom.secretKeyRef.name=s",
              "env[0].valueFrom.secretKeyRef.key=group")  # fmt: skip
    result = _helm("template", "rel", str(CHART), *_values_args("defaults", (*clicks, *secret)), check=False)
    assert result.returncode != 0 and "config.kafka.dlq_topic" in result.stderr, result.stderr
    named = yaml.safe_load(config_text(render("defaults", *clicks, *secret, "config.kafka.dlq_topic=clicks.bad")))
    assert named["kafka"]["dlq_topic"] == "clicks.bad"
    for decides in ("DISTILLD_KAFKA__DLQ_TOPIC", "DISTILLD_PROCESSING__ON_ERROR"):  # env names it, or needs none
        env_dlq = ("env[1].name=" + decides, "env[1].value=skip")
        rendered = yaml.safe_load(config_text(render("defaults", *clicks, *secret, *env_dlq)))
        assert "dlq_topic" not in rendered["kafka"], decides


def test_an_env_value_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    """Kubernetes takes an EnvVar's value as a string only: `value: 0.05` (a YAML number) rendered as it is
    would make the API server refuse the Deployment at install. The values schema refuses it first."""
    values = tmp_path / "env.yaml"
    values.write_text("env:\n  - {name: DISTILLD_REDUCER__RATE, value: 0.05}\n")
    for command in ("template", "lint"):
        result = _helm(command, *(["rel"] if command == "template" else []), str(CHART), "-f", str(values), check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "env" in output and "string" in output, output
    values.write_text('env:\n  - {name: DISTILLD_REDUCER__RATE, value: "0.05"}\n')
    rendered = _helm("template", "rel", str(CHART), "-f", str(values)).stdout
    (docs,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    (container,) = docs["spec"]["template"]["spec"]["containers"]
    assert {"name": "DISTILLD_REDUCER__RATE", "value": "0.05"} in container["env"]


def test_a_grace_period_of_zero_is_refused_not_replaced_by_the_default() -> None:
    """0 is a value (kill at once, no flush or commit), not "unset": it is refused like any grace period at or
    below the shutdown deadline, rather than silently becoming shutdown_timeout_s + 15."""
    for case in ("defaults", "sidecar-values.yaml"):  # the sidecar's NOTES name the grace period to give
        args = _values_args(case, ("terminationGracePeriodSeconds=0",))
        result = _helm("template", "rel", str(CHART), *args, check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "terminationGracePeriodSeconds (0)" in output, output

    def grace(value: str) -> int:
        spec = deployment(render("defaults", f"terminationGracePeriodSeconds={value}"))["spec"]["template"]["spec"]
        return int(spec["terminationGracePeriodSeconds"])

    assert grace("31") == 31
    assert grace("null") == 45, "unset: the deadline + 15"


def test_a_group_instance_id_shared_by_every_pod_is_refused() -> None:
    """Static membership gives each consumer its own group.instance.id: one in the ConfigMap (or in a plain
    env value) is every pod's, and on Apache Kafka pods sharing it fence each other out of the group in turn."""
    for shared in (
        (r"config.kafka.consumer.group\.instance\.id=distilld-0",),
        ("env[0].name=DISTILLD_KAFKA__CONSUMER__group.instance.id", "env[0].value=distilld-0"),
    ):
        result = _helm("template", "rel", str(CHART), *_values_args("defaults", shared), check=False)
        assert result.returncode != 0 and "group.instance.id" in result.stderr and "fence" in result.stderr, shared
    # one per pod (the pod's name) is not shared
    per_pod = (
        "env[0].name=DISTILLD_KAFKA__CONSUMER__group.instance.id",
        "env[0].valueFrom.fieldRef.fieldPath=metadata.name",
    )
    names = {e["name"] for e in distilld_container(render("defaults", *per_pod))["env"]}
    assert "DISTILLD_KAFKA__CONSUMER__group.instance.id" in names
