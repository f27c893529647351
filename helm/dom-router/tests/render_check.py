#!/usr/bin/env python3
"""Renders the dom-router Helm chart with Helm's own engine and checks what it makes.

Helm runs as a library (the helm-python-sdk package binds Helm's Go SDK), so no helm binary
and no cluster are needed. Every rendered manifest is validated against the Kubernetes API
schemas shipped by kubernetes-validate, in strict mode (unknown fields are errors), for the
oldest Kubernetes the chart supports and the newest the package knows. Then the things that
matter to the service are checked one by one: the server.toml the chart writes against the
project's own config/server.toml, the demo rules against config/, the config mount and the
annotation that rolls the pods, the grace period against the drain timeout, the probes, where
secrets go, and that values which cannot work fail to render with a message naming them.

    render_check.py check                       run every check; exit 1 if one fails
    render_check.py write-config DIR [VALUES]   write the config directory a pod would mount

Run by tests/helm_chart.rs, with the Python of the virtualenv scripts/setup.sh makes
(ensure_chart_deps).
"""

from __future__ import annotations

import argparse
import base64
import copy
import re
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any, Callable

try:
    import helm_python as helm
    import kubernetes_validate
    import yaml
except ImportError as e:
    sys.exit(
        f"render_check.py: {e}; make the chart test's virtualenv with "
        "`. scripts/setup.sh && ensure_chart_deps` (./scripts/test does)"
    )

CHART = Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
CI_VALUES = CHART / "ci" / "redis-cluster-values.yaml"
RELEASE = "shop"
NAMESPACE = "orders"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion: native gRPC probes) and
# the newest whose schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())

CONFIG_DIR = "/etc/dom-router/config"
SECRETS_DIR = "/etc/dom-router/secrets"
TLS_DIR = "/etc/dom-router/tls"
HEALTH_PORT = 50052


# ---------------------------------------------------------------------------------------------
# Rendering


class Render:
    """One rendering of the chart: the manifests by kind and name, and the raw text."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.notes = next((t for k, t in files.items() if k.endswith("NOTES.txt")), "")
        self.docs: list[dict[str, Any]] = []
        self.texts: list[tuple[dict[str, Any], str]] = []
        for name, text in files.items():
            if name.endswith("NOTES.txt"):
                continue
            for chunk in re.split(r"(?m)^---\s*$", text):
                doc = yaml.safe_load(chunk)
                if doc:
                    self.docs.append(doc)
                    self.texts.append((doc, chunk))

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        return self.pod["containers"][0]

    @property
    def config_map(self) -> dict[str, Any]:
        return self.one("ConfigMap")

    def config_file(self, name: str) -> str:
        return self.config_map["data"][name]

    @property
    def server_toml(self) -> dict[str, Any]:
        return tomllib.loads(self.config_file("server.toml"))

    @property
    def checksum(self) -> str:
        return self.deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.one("Secret", name)
        return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


_chart: helm.Chart | None = None


def chart() -> helm.Chart:
    global _chart
    if _chart is None:
        _chart = helm.Chart.load(CHART)
    return _chart


def render(values: dict[str, Any] | None = None) -> Render:
    return Render(chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True))


def ci_values() -> dict[str, Any]:
    return yaml.safe_load(CI_VALUES.read_text())


def merged(base: dict[str, Any] | None, **overrides: Any) -> dict[str, Any]:
    """`base` with dotted-path overrides: merged(v, **{"store.kind": "memory"})."""
    out = copy.deepcopy(base or {})
    for path, value in overrides.items():
        node = out
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def render_error(values: dict[str, Any]) -> str:
    """The message of a render that must fail; an AssertionError if it renders."""
    try:
        render(values)
    except helm.HelmError as e:
        return str(e)
    raise AssertionError(f"rendered, but should have failed: {values}")


# ---------------------------------------------------------------------------------------------
# Checks

CHECKS: list[tuple[str, Callable[[], None]]] = []


def check(fn: Callable[[], None]) -> Callable[[], None]:
    CHECKS.append((fn.__name__.replace("_", " "), fn))
    return fn


def validate_manifests(r: Render, label: str) -> None:
    for doc in r.docs:
        what = f"{label}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "ServiceMonitor":
            # a CRD: kubernetes-validate has no schema for it; its shape is checked below
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", what
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                raise AssertionError(f"{what} against Kubernetes {version}: {path}: {e.message}")
            except kubernetes_validate.utils.SchemaNotFoundError as e:
                raise AssertionError(f"{what}: {e.message}")


@check
def the_validator_is_strict() -> None:
    # a misspelt field must fail, or passing validation would prove nothing
    deployment = copy.deepcopy(render().deployment)
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    try:
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)
    except kubernetes_validate.ValidationError:
        return
    raise AssertionError("a Deployment with a misspelt field passed validation")


@check
def lint_passes_with_default_and_ci_values() -> None:
    for label, values in (("default", None), ("ci", ci_values())):
        for version in KUBE_VERSIONS:
            report = helm.lint(CHART, values, strict=True, kube_version=f"v{version}.0")
            problems = [m for m in report["messages"] if m["severity"] >= 2]
            assert not problems and not report["errors"], f"{label}, {version}: {report}"


@check
def default_manifests_are_valid_kubernetes() -> None:
    validate_manifests(render(), "default")


@check
def ci_manifests_are_valid_kubernetes() -> None:
    validate_manifests(render(ci_values()), "ci")


@check
def other_shapes_are_valid_kubernetes() -> None:
    shapes = {
        "memory, one replica": {
            "store": {"kind": "memory"},
            "autoscaling": {"enabled": False},
            "replicaCount": 1,
        },
        "existing secrets and rules": existing_values(),
        "everything optional off": {
            "autoscaling": {"enabled": False},
            "podDisruptionBudget": {"enabled": False},
            "metrics": {"enabled": False},
            "serviceAccount": {"create": False},
            "service": {"headless": False, "type": "LoadBalancer"},
            "startupProbe": {"enabled": False},
            "lifecycle": {"preStopSleepSeconds": 0},
            "podAntiAffinityPreset": "hard",
            "image": {"digest": "sha256:" + "ab" * 32},
        },
    }
    for label, values in shapes.items():
        validate_manifests(render(values), label)


@check
def default_release_makes_the_expected_objects() -> None:
    r = render()
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in r.docs)
    assert kinds == [
        "ConfigMap/shop-dom-router",
        "Deployment/shop-dom-router",
        "HorizontalPodAutoscaler/shop-dom-router",
        "PodDisruptionBudget/shop-dom-router",
        "Service/shop-dom-router",
        "Service/shop-dom-router-headless",
        "ServiceAccount/shop-dom-router",
    ], kinds
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in r.docs)


@check
def the_demo_rules_are_the_projects_own() -> None:
    r = render()
    for name in ("network.toml", "segments.toml", "alerts.toml"):
        shipped = (REPO / "config" / name).read_text()
        assert r.config_file(name) == shipped, f"{name} in the ConfigMap differs from config/{name}"
        link = CHART / "files" / name
        assert link.resolve() == (REPO / "config" / name).resolve(), f"{link} is not config/{name}"
    assert "stock.csv" not in r.config_map["data"], "no starting stock unless asked for"
    demo = render({"config": {"demoStock": True}})
    assert demo.config_file("stock.csv") == (REPO / "config" / "stock.csv").read_text()


@check
def rules_from_values_replace_the_demo() -> None:
    network = 'currency = "EUR"\n\n[[node]]\nid = "wh-1"\nkind = "warehouse"\ncountry = "ES"\nlat = 40.0\nlon = -3.0\n'
    segments = "[segment.standard]\nmax_shipments = 1\n"
    alerts = "[[node]]\nsku = \"*\"\nunits = 4\n"
    r = render({"config": {"network": network, "segments": segments, "alerts": alerts, "stock": "sku,node,on_hand,safety_stock\nA,wh-1,5,0\n"}})
    assert r.config_file("network.toml") == network
    assert r.config_file("segments.toml") == segments
    assert r.config_file("alerts.toml") == alerts
    assert r.config_file("stock.csv").startswith("sku,node")


def toml_type(value: Any) -> str:
    return "float" if isinstance(value, float) else type(value).__name__


@check
def server_toml_has_every_key_of_the_servers_own_with_its_type() -> None:
    shipped = tomllib.loads((REPO / "config" / "server.toml").read_text())
    rendered = render().server_toml

    def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in table.items():
            if isinstance(value, dict):
                out.update(flatten(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    want, got = flatten(shipped), flatten(rendered)
    assert set(got) == set(want), (
        f"missing from the chart: {sorted(set(want) - set(got))}; "
        f"unknown to the server: {sorted(set(got) - set(want))}"
    )
    for key in want:
        assert toml_type(got[key]) == toml_type(want[key]), (
            f"{key}: the chart writes a {toml_type(got[key])}, the server reads a {toml_type(want[key])}"
        )
    # the chart's defaults are the server's, but for what a pod in a cluster needs
    set_by_the_chart = {
        "server.listen": "0.0.0.0:50051",
        "server.health_listen": "0.0.0.0:50052",
        "metrics.listen": "0.0.0.0:9464",
        "store.kind": "redis",
        "store.redis.urls": ["redis://redis:6379"],
    }
    for key, value in set_by_the_chart.items():
        assert got[key] == value, f"{key} = {got[key]!r}, want {value!r}"
    drifted = {k: (got[k], want[k]) for k in want if k not in set_by_the_chart and got[k] != want[k]}
    assert not drifted, f"chart defaults differ from config/server.toml (chart, server): {drifted}"


@check
def server_toml_writes_numbers_and_strings_as_toml() -> None:
    r = render(
        {
            "tracing": {"sample_ratio": 1, "otlp_endpoint": "http://otel-collector.observability:4317"},
            "server": {"max_message_bytes": 16777216, "reload_interval_ms": 0},
            "store": {"redis": {"key_prefix": 'dom"eu\\1'}},
        }
    )
    s = r.server_toml
    assert s["tracing"]["sample_ratio"] == 1.0 and isinstance(s["tracing"]["sample_ratio"], float)
    assert s["tracing"]["otlp_endpoint"] == "http://otel-collector.observability:4317"
    assert s["server"]["max_message_bytes"] == 16777216
    assert s["server"]["reload_interval_ms"] == 0
    assert s["store"]["redis"]["key_prefix"] == 'dom"eu\\1'
    assert render({"tracing": {"sample_ratio": 0.25}}).server_toml["tracing"]["sample_ratio"] == 0.25
    off = render({"metrics": {"enabled": False}})
    assert off.server_toml["metrics"]["listen"] == ""
    assert all(p["name"] != "metrics" for p in off.container["ports"])


@check
def config_is_mounted_as_a_directory_from_the_config_map() -> None:
    r = render()
    mount = next(m for m in r.container["volumeMounts"] if m["mountPath"] == CONFIG_DIR)
    assert "subPath" not in mount and "subPathExpr" not in mount, "a subPath mount never sees ConfigMap updates"
    volume = next(v for v in r.pod["volumes"] if v["name"] == mount["name"])
    sources = volume["projected"]["sources"]
    assert [s["configMap"]["name"] for s in sources] == [r.config_map["metadata"]["name"]]
    assert all("subPath" not in m for m in r.container["volumeMounts"])
    assert r.container["args"] == ["serve", "--config", CONFIG_DIR, "--log-format", "json"]


@check
def checksum_rolls_the_pods_for_server_settings_but_not_for_rules() -> None:
    base = render()
    assert re.fullmatch(r"[0-9a-f]{64}", base.checksum), base.checksum
    assert render().checksum == base.checksum, "the checksum must not change between identical renders"
    for change in (
        {"server": {"request_timeout_ms": 5000}},
        {"store": {"redis": {"urls": ["redis://redis-primary:6379"]}}},
        {"auth": {"mode": "tokens", "clients": [{"name": "a", "role": "feed", "token": "x" * 16}]}},
        {"config": {"demoStock": True}},
    ):
        assert render(change).checksum != base.checksum, f"{change} must roll the pods"
    # rules are reloaded live: the ConfigMap changes, the pods stay
    rules = render({"config": {"segments": "[segment.standard]\nmax_shipments = 1\n"}})
    assert rules.config_file("segments.toml") != base.config_file("segments.toml")
    assert rules.checksum == base.checksum, "a rules change must not roll the pods"


@check
def grace_period_outlasts_the_drain() -> None:
    for values in (None, ci_values(), {"server": {"drain_timeout_ms": 61500}, "lifecycle": {"preStopSleepSeconds": 0}}):
        r = render(values)
        drain_ms = r.server_toml["server"]["drain_timeout_ms"]
        pre_stop = r.container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])
        grace = r.pod["terminationGracePeriodSeconds"]
        assert grace * 1000 > int(pre_stop[1]) * 1000 + drain_ms, (grace, pre_stop, drain_ms)
    assert render({"terminationGracePeriodSeconds": 21}).pod["terminationGracePeriodSeconds"] == 21


@check
def probes_are_native_grpc_on_the_health_port() -> None:
    r = render()
    c = r.container
    assert {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"} in c["ports"]
    assert c["startupProbe"]["grpc"] == {"port": HEALTH_PORT, "service": "liveness"}
    assert c["livenessProbe"]["grpc"] == {"port": HEALTH_PORT, "service": "liveness"}
    assert c["readinessProbe"]["grpc"] == {"port": HEALTH_PORT, "service": ""}
    assert r.server_toml["server"]["health_listen"] == f"0.0.0.0:{HEALTH_PORT}"
    moved = render({"containerPorts": {"health": 8086}})
    assert moved.container["readinessProbe"]["grpc"]["port"] == 8086
    assert moved.server_toml["server"]["health_listen"] == "0.0.0.0:8086"


@check
def pods_run_locked_down() -> None:
    r = render()
    pod_sc, sc = r.pod["securityContext"], r.container["securityContext"]
    assert pod_sc["runAsNonRoot"] and pod_sc["runAsUser"] == 10001 and pod_sc["runAsGroup"] == 10001
    assert sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert r.pod["automountServiceAccountToken"] is False
    assert any(m["mountPath"] == "/tmp" for m in r.container["volumeMounts"])
    assert r.container["resources"]["requests"]["cpu"]


@check
def service_publishes_grpc_and_metrics() -> None:
    r = render()
    svc = r.one("Service", "shop-dom-router")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["port"] == 50051 and ports["grpc"]["appProtocol"] == "grpc"
    assert ports["metrics"]["port"] == 9464
    assert "health" not in ports
    container_ports = {p["name"] for p in r.container["ports"]}
    assert {p["targetPort"] for p in ports.values()} <= container_ports
    assert svc["spec"]["selector"] == r.deployment["spec"]["selector"]["matchLabels"]
    assert r.one("Service", "shop-dom-router-headless")["spec"]["clusterIP"] == "None"


@check
def autoscaler_owns_the_replica_count() -> None:
    r = render()
    hpa = r.one("HorizontalPodAutoscaler")
    assert "replicas" not in r.deployment["spec"], "with an autoscaler, a fixed count would fight it"
    assert hpa["spec"]["scaleTargetRef"]["name"] == r.deployment["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    fixed = render({"autoscaling": {"enabled": False}, "replicaCount": 3})
    assert fixed.deployment["spec"]["replicas"] == 3 and not fixed.all("HorizontalPodAutoscaler")
    single = render({"store": {"kind": "memory"}, "autoscaling": {"enabled": False}, "replicaCount": 1})
    assert not single.all("PodDisruptionBudget"), "a budget for one pod can only block node drains"


@check
def redis_password_reaches_the_pod_only_through_a_secret() -> None:
    values = ci_values()
    password = values["store"]["redis"]["password"]
    r = render(values)
    env = {e["name"]: e for e in r.container["env"]}
    ref = env["DOM_ROUTER__STORE__REDIS__PASSWORD"]
    assert "value" not in ref, "the password must not sit in the pod spec"
    key_ref = ref["valueFrom"]["secretKeyRef"]
    assert r.secret_data(key_ref["name"])[key_ref["key"]] == password
    encoded = base64.b64encode(password.encode()).decode()
    for doc, text in r.texts:
        if doc["kind"] != "Secret":
            assert password not in text and encoded not in text, f"the password is in {doc['kind']}"
    assert password not in r.notes
    assert "password" not in r.server_toml["store"]["redis"]
    # with an existing Secret the chart makes none and points at it
    r = render(existing_values())
    key_ref = {e["name"]: e for e in r.container["env"]}["DOM_ROUTER__STORE__REDIS__PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert key_ref == {"name": "shop-redis", "key": "password"}
    assert not r.all("Secret")
    # no password: no variable
    assert "DOM_ROUTER__STORE__REDIS__PASSWORD" not in {e["name"] for e in render().container["env"]}


@check
def webhooks_reach_server_toml_with_their_secrets_from_secrets() -> None:
    hooks = [
        {"name": "oms", "url": "https://oms.example/hooks", "kinds": ["low_stock"], "secretName": "oms-hook"},
        {"name": "wms", "url": "http://wms:8080/dom", "secretName": "wms-hook", "secretKey": "key", "timeout_ms": 900},
    ]
    r = render({"webhooks": hooks})
    written = r.server_toml["webhook"]
    assert [w["name"] for w in written] == ["oms", "wms"]
    assert written[0]["kinds"] == ["low_stock"] and written[1]["kinds"] == []
    assert written[1]["timeout_ms"] == 900 and written[0]["timeout_ms"] == 5000
    assert "secret" not in written[0], "no secret in the ConfigMap"
    env = {e["name"]: e for e in r.container["env"]}
    for i, hook in enumerate(hooks):
        var = f"DOM_ROUTER_WEBHOOK_{i}_SECRET"
        assert written[i]["secret_env"] == var
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": hook["secretName"], "key": hook.get("secretKey", "secret")}
    assert "webhook" not in render().server_toml, "none by default"
    assert "url" in render_error({"webhooks": [{"name": "x", "url": "ftp://x", "secretName": "s"}]})


@check
def ci_release_uses_the_cluster_tokens_and_tls() -> None:
    values = ci_values()
    r = render(values)
    s = r.server_toml
    assert s["store"]["kind"] == "redis" and s["store"]["redis"]["cluster"] is True
    assert s["store"]["redis"]["urls"] == values["store"]["redis"]["urls"] and len(s["store"]["redis"]["urls"]) >= 3
    assert s["auth"] == {"mode": "tokens", "tokens_file": f"{SECRETS_DIR}/tokens.toml"}
    assert s["tls"] == {
        "cert_file": f"{TLS_DIR}/tls.crt",
        "key_file": f"{TLS_DIR}/tls.key",
        "client_ca_file": f"{TLS_DIR}/ca.crt",
    }
    # tokens.toml: the clients of the values, in the server's format
    tokens = tomllib.loads(r.secret_data("shop-dom-router-tokens")["tokens.toml"])
    assert tokens == {"client": values["auth"]["clients"]}
    for doc, text in r.texts:
        if doc["kind"] != "Secret":
            for client in values["auth"]["clients"]:
                assert client["token"] not in text, f"a token is in {doc['kind']}"
    tls = next(v for v in r.pod["volumes"] if v["name"] == "tls")["secret"]
    assert tls["secretName"] == "dom-router-tls"
    assert [i["key"] for i in tls["items"]] == ["tls.crt", "tls.key", "ca.crt"]
    # every file server.toml names is where a volume puts it
    mounted = set()
    for m in r.container["volumeMounts"]:
        volume = next(v for v in r.pod["volumes"] if v["name"] == m["name"])
        for item in volume.get("secret", {}).get("items", []):
            mounted.add(f"{m['mountPath']}/{item['path']}")
    for path in (*s["tls"].values(), s["auth"]["tokens_file"]):
        assert path in mounted, f"{path} is named in server.toml but no volume puts it there"
    # the rest of the ci values
    assert s["server"]["drain_timeout_ms"] == 20000 and r.pod["terminationGracePeriodSeconds"] > 25
    assert r.one("PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": {"matchLabels": r.deployment["spec"]["selector"]["matchLabels"]},
    }
    metrics = {m["resource"]["name"] for m in r.one("HorizontalPodAutoscaler")["spec"]["metrics"]}
    assert metrics == {"cpu", "memory"}
    spread = r.pod["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"] == r.deployment["spec"]["selector"]["matchLabels"]
    assert "affinity" not in r.pod
    assert {"name": "TZ", "value": "UTC"} in r.container["env"]


@check
def service_monitor_scrapes_the_metrics_port() -> None:
    r = render(ci_values())
    sm = r.one("ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = sm["spec"]["selector"]["matchLabels"]
    services = [
        s for s in r.all("Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    endpoint = sm["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
    scraped = [s for s in services if any(p["name"] == endpoint["port"] for p in s["spec"]["ports"])]
    assert [s["metadata"]["name"] for s in scraped] == ["shop-dom-router"], scraped
    assert not render().all("ServiceMonitor"), "off by default"


def existing_values() -> dict[str, Any]:
    return {
        "store": {"redis": {"existingSecret": "shop-redis", "existingSecretPasswordKey": "password"}},
        "auth": {"mode": "tokens", "existingSecret": "shop-tokens", "existingSecretKey": "clients.toml"},
        "config": {"existingConfigMap": "shop-rules"},
    }


@check
def existing_secrets_and_rules_are_used_as_they_are() -> None:
    r = render(existing_values())
    # the thresholds come from the chart's own ConfigMap all the same
    assert set(r.config_map["data"]) == {"server.toml", "alerts.toml"}
    volume = next(v for v in r.pod["volumes"] if v["name"] == "config")
    rules = volume["projected"]["sources"][1]["configMap"]
    assert rules == {
        "name": "shop-rules",
        "items": [
            {"key": "network.toml", "path": "network.toml"},
            {"key": "segments.toml", "path": "segments.toml"},
        ],
    }
    tokens = next(v for v in r.pod["volumes"] if v["name"] == "tokens")["secret"]
    assert tokens["secretName"] == "shop-tokens"
    assert tokens["items"] == [{"key": "clients.toml", "path": "tokens.toml"}]


@check
def notes_say_how_to_reach_it() -> None:
    notes = render().notes
    assert "shop-dom-router.orders.svc:50051" in notes and "grpcurl -plaintext" in notes
    assert "placeholder" in notes, "the default Redis URL must be called out"
    notes = render(ci_values()).notes
    assert "Redis Cluster" in notes and "bearer tokens" in notes and "-insecure" in notes


# Values that cannot work, and words the failure must contain.
INVALID: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("an unknown store", {"store": {"kind": "mongo"}}, ("/store/kind", "memory", "redis")),
    ("memory store, three replicas", {"store": {"kind": "memory"}, "autoscaling": {"enabled": False}, "replicaCount": 3},
     ("store.kind", "memory", "replicaCount 3")),
    ("memory store, autoscaled", {"store": {"kind": "memory"}}, ("store.kind", "autoscaling.enabled")),
    ("grace shorter than the drain", {"terminationGracePeriodSeconds": 10},
     ("terminationGracePeriodSeconds", "10 s", "server.drain_timeout_ms (15000 ms)")),
    ("grace equal to preStop + drain", {"terminationGracePeriodSeconds": 20}, ("terminationGracePeriodSeconds",)),
    ("redis with no URL", {"store": {"redis": {"urls": []}}}, ("store.redis.urls", "no URL")),
    ("two URLs for a single Redis", {"store": {"redis": {"urls": ["redis://a:6379", "redis://b:6379"]}}},
     ("store.redis.urls", "store.redis.cluster=true")),
    ("a password in a URL", {"store": {"redis": {"urls": ["redis://:hunter2hunter2@redis:6379"]}}},
     ("store.redis.urls[0]", "password")),
    ("not a Redis URL", {"store": {"redis": {"urls": ["http://redis:6379"]}}}, ("store.redis.urls[0]", "rediss://")),
    ("a hash tag in the key prefix", {"store": {"redis": {"key_prefix": "dom{x}"}}}, ("/store/redis/key_prefix",)),
    ("an unknown auth mode", {"auth": {"mode": "ldap"}}, ("/auth/mode", "open", "tokens")),
    ("an unknown role", {"auth": {"mode": "tokens", "clients": [{"name": "x", "role": "admin", "token": "a" * 20}]}},
     ("/auth/clients/0/role", "checkout")),
    ("a short token", {"auth": {"mode": "tokens", "clients": [{"name": "x", "role": "feed", "token": "short"}]}},
     ("/auth/clients/0/token",)),
    ("tokens with no clients", {"auth": {"mode": "tokens"}}, ("auth.clients", "no client")),
    ("clients while open", {"auth": {"clients": [{"name": "x", "role": "feed", "token": "a" * 20}]}},
     ("auth.mode", "auth.mode=tokens")),
    ("a client twice", {"auth": {"mode": "tokens", "clients": [
        {"name": "x", "role": "feed", "token": "a" * 20}, {"name": "x", "role": "planner", "token": "b" * 20}]}},
     ("auth.clients[1].name", "twice")),
    ("a shared token", {"auth": {"mode": "tokens", "clients": [
        {"name": "x", "role": "feed", "token": "a" * 20}, {"name": "y", "role": "planner", "token": "a" * 20}]}},
     ("auth.clients[1].token", "auth.clients[0]")),
    ("a port out of range", {"containerPorts": {"grpc": 70000}}, ("/containerPorts/grpc",)),
    ("a privileged port", {"containerPorts": {"metrics": 80}}, ("/containerPorts/metrics",)),
    ("two listeners on one port", {"containerPorts": {"metrics": 50051}}, ("containerPorts", "must differ")),
    ("TLS with no Secret", {"tls": {"enabled": True}}, ("tls.existingSecret",)),
    ("client certificates without TLS", {"tls": {"requireClientCert": True}}, ("tls.requireClientCert",)),
    ("a ServiceMonitor with no metrics", {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
     ("metrics.serviceMonitor.enabled",)),
    ("hold bounds upside down", {"holds": {"min_ttl_secs": 100, "max_ttl_secs": 10}}, ("holds.min_ttl_secs",)),
    ("default hold outside its bounds", {"holds": {"default_ttl_secs": 90000}}, ("holds.default_ttl_secs",)),
    ("a sample ratio above 1", {"tracing": {"sample_ratio": 1.5}}, ("/tracing/sample_ratio",)),
    ("a misspelt server key", {"server": {"drain_timeout": 1000}}, ("drain_timeout",)),
    ("the listen address as a value", {"server": {"listen": "0.0.0.0:80"}}, ("listen",)),
    ("a misspelt top-level key", {"replicas": 3}, ("replicas",)),
    ("both budgets", {"podDisruptionBudget": {"minAvailable": 1}}, ("podDisruptionBudget", "both set")),
    ("autoscaling bounds upside down", {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}},
     ("autoscaling.minReplicas",)),
    ("CPU target with no CPU request", {"resources": {"requests": {"cpu": None}}},
     ("autoscaling.targetCPUUtilizationPercentage", "resources.requests.cpu")),
    ("rules from a ConfigMap and from values", {"config": {"existingConfigMap": "x", "segments": "[segment.a]\n"}},
     ("config.existingConfigMap",)),
    ("a password and an existing Secret", {"store": {"redis": {"password": "p", "existingSecret": "s"}}},
     ("store.redis.password and store.redis.existingSecret",)),
    ("an unknown strategy", {"sourcing": {"default_strategy": "cheapest"}}, ("/sourcing/default_strategy",)),
    ("zero solver threads", {"sourcing": {"solver_threads": 0}}, ("/sourcing/solver_threads",)),
]


@check
def values_that_cannot_work_fail_with_a_message_naming_them() -> None:
    problems = []
    for label, values, words in INVALID:
        try:
            message = render_error(values)
        except AssertionError as e:
            problems.append(f"{label}: {e}")
            continue
        missing = [w for w in words if w not in message]
        if missing:
            problems.append(f"{label}: the message lacks {missing}: {message}")
    assert not problems, "\n  ".join(["", *problems])


@check
def several_problems_are_reported_at_once() -> None:
    message = render_error({"store": {"kind": "memory"}, "tls": {"enabled": True}, "terminationGracePeriodSeconds": 3})
    for words in ("store.kind", "tls.existingSecret", "terminationGracePeriodSeconds"):
        assert words in message, message


# ---------------------------------------------------------------------------------------------


def run_checks() -> int:
    failed = []
    for name, fn in CHECKS:
        try:
            fn()
        except Exception as e:  # an error in a check is reported as that check's failure
            if isinstance(e, AssertionError):
                # a bare assert says nothing: show the statement that failed
                frame = traceback.extract_tb(e.__traceback__)[-1]
                detail = str(e) or f"line {frame.lineno}: {frame.line}"
            else:
                detail = traceback.format_exc()
            failed.append(name)
            print(f"FAIL {name}: {detail}")
        else:
            print(f"ok   {name}")
    if failed:
        print(f"\n{len(failed)} of {len(CHECKS)} chart checks failed: {', '.join(failed)}")
        return 1
    print(f"\nall {len(CHECKS)} chart checks hold")
    return 0


def write_config(out: Path, values_file: Path | None) -> int:
    """Writes the files of the pods' config directory, as the ConfigMap holds them."""
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    r = render(values)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in r.config_map["data"].items():
        (out / name).write_text(text)
    print(f"wrote {', '.join(sorted(r.config_map['data']))} to {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="run every check")
    write = commands.add_parser("write-config", help="write the config directory a pod would mount")
    write.add_argument("dir", type=Path)
    write.add_argument("values", type=Path, nargs="?")
    args = parser.parse_args()
    if args.command == "check":
        return run_checks()
    return write_config(args.dir, args.values)


if __name__ == "__main__":
    sys.exit(main())
