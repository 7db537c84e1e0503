"""deploy/k8s rendered by kustomize (no cluster, no kubectl) and checked offline: every
object against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields
fail) and the Strimzi KafkaUsers against Strimzi's CRD (vendored), then against the
services' Settings, the contract catalogue's principals and the hardening rules."""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as k8s_schemas

from shared.access import PRINCIPALS, SERVICES
from tests.deploy.strimzi import CLUSTER, OVERLAYS
from tests.deploy.support import (
    DEPLOYED_INFRA,
    NON_ROOT_UID,
    SETTINGS,
    default_port,
    env_names,
    infra_names,
    is_secret_field,
    prefix_of,
    required_secret,
)

Obj = dict[str, Any]
# The oldest Kubernetes the manifests must suit, and the newest schemas the package has.
OLDEST_K8S = "1.30"
NAMESPACES = {"dev": "jakpreneur-dev", "prod": "jakpreneur"}
MEMORY = {"Mi": 2**20, "Gi": 2**30, "M": 10**6, "G": 10**9}
# Strimzi's KafkaUser CRD, unchanged (see schemas/README.md), and the Kinds it defines.
STRIMZI_CRD = yaml.safe_load(
    (Path(__file__).with_name("schemas") / "strimzi-kafkauser-crd.yaml").read_text()
)
CUSTOM_KINDS = {"KafkaUser"}
OVERLAY = {overlay.name: overlay for overlay in OVERLAYS}


def objects(rendered: dict[str, list[Obj]], overlay: str, kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in rendered[overlay] if o["kind"] == kind}


def service_container(deployment: Obj) -> Obj:
    containers: list[Obj] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "service"]
    return container


def deployments(rendered: dict[str, list[Obj]], overlay: str) -> dict[str, Obj]:
    found = objects(rendered, overlay, "Deployment")
    assert set(found) == set(SETTINGS), "one Deployment per service"
    for name, deployment in found.items():
        assert service_container(deployment)["args"] == [name]
    return found


def config_maps(rendered: dict[str, list[Obj]], overlay: str) -> dict[str, dict[str, str]]:
    return {name: o.get("data", {}) for name, o in objects(rendered, overlay, "ConfigMap").items()}


def generated(maps: dict[str, dict[str, str]], name: str) -> dict[str, str]:
    """The data of generated ConfigMap ``name`` (kustomize appends a content hash, so a
    change of configuration rolls the pods)."""
    (data,) = [d for full, d in maps.items() if re.fullmatch(rf"{name}-[a-z0-9]{{10}}", full)]
    return data


def container_env(container: Obj, maps: dict[str, dict[str, str]]) -> dict[str, Obj]:
    """Each variable the container gets -> its source ({"value": ...}, {"valueFrom": ...} or
    {"configMap": name})."""
    env: dict[str, Obj] = {}
    for source in container.get("envFrom", []):
        assert "prefix" not in source
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in maps, f"envFrom names a ConfigMap that is not rendered: {name}"
            env.update({key: {"configMap": name} for key in maps[name]})
        else:
            env.update({"<whole secret>": source})
    for item in container.get("env", []):
        env[item["name"]] = {k: v for k, v in item.items() if k != "name"}
    return env


def quantity(value: str) -> float:
    for suffix, factor in MEMORY.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    if value.endswith("m"):
        return float(value[:-1]) / 1000
    return float(value)


@pytest.mark.parametrize("version", [OLDEST_K8S, k8s_schemas.latest_version()])
def test_every_object_matches_the_kubernetes_schema(
    rendered: dict[str, list[Obj]], overlay: str, version: str
) -> None:
    kinds = Counter(o["kind"] for o in rendered[overlay])
    assert kinds == {
        "Namespace": 1,
        "ConfigMap": 2,
        "Deployment": 4,
        "Service": 4,
        "PodDisruptionBudget": 4,
        "KafkaUser": len(OVERLAY[overlay].users()),
    }
    for obj in rendered[overlay]:
        if obj["kind"] not in CUSTOM_KINDS:  # those: Strimzi's schema, below
            k8s_schemas.validate(obj, version, strict=True)  # raises on the first problem


def test_the_schema_check_rejects_an_unknown_field(rendered: dict[str, list[Obj]]) -> None:
    deployment = objects(rendered, "dev", "Deployment")["registry"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(k8s_schemas.ValidationError):
        k8s_schemas.validate(broken, k8s_schemas.latest_version(), strict=True)


def test_probes_use_the_service_port(rendered: dict[str, list[Obj]], overlay: str) -> None:
    maps = config_maps(rendered, overlay)
    for name, deployment in deployments(rendered, overlay).items():
        container = service_container(deployment)
        env = container_env(container, maps)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        port_var = f"{prefix_of(SETTINGS[name])}HTTP_PORT"
        expected = int(env[port_var]["value"]) if port_var in env else default_port(name)
        assert ports == {"http": expected}, name
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            get = container[probe]["httpGet"]
            assert (get["path"], ports.get(get["port"], get["port"])) == (path, expected), (
                f"{name} {probe}"
            )
        for other in deployment["spec"]["template"]["spec"]["containers"]:
            assert other.get("livenessProbe") and other.get("readinessProbe"), other["name"]


def test_http_binds_all_interfaces(rendered: dict[str, list[Obj]], overlay: str) -> None:
    maps = config_maps(rendered, overlay)
    for name, deployment in deployments(rendered, overlay).items():
        env = container_env(service_container(deployment), maps)
        assert env[f"{prefix_of(SETTINGS[name])}HTTP_HOST"] == {"value": "0.0.0.0"}, name


def test_resources_are_requested_and_limited(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for name, deployment in deployments(rendered, overlay).items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[kind].keys(), (name, container["name"])
            requested = quantity(resources["requests"]["memory"])
            limit = quantity(resources["limits"]["memory"])
            assert requested <= limit, name
        limit = quantity(service_container(deployment)["resources"]["limits"]["memory"])
        # A service's RSS stays under 150 MB: 256Mi in dev, more headroom in prod.
        assert 200 * 2**20 <= limit <= 1024 * 2**20, name


def test_pods_run_non_root_read_only_without_privileges(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    for name, deployment in deployments(rendered, overlay).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == NON_ROOT_UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            context = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert context.get("runAsNonRoot", True) is True, where
            assert context.get("runAsUser", NON_ROOT_UID) == NON_ROOT_UID, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where


def test_environment_names_are_settings_fields(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    maps = config_maps(rendered, overlay)
    for name, deployment in deployments(rendered, overlay).items():
        env = container_env(service_container(deployment), maps)
        unknown = set(env) - set(env_names(SETTINGS[name]))
        assert not unknown, f"{name} does not read {sorted(unknown)}"
        assert infra_names() & env.keys() >= DEPLOYED_INFRA, name


def test_secret_fields_come_from_secrets(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """Every secret-like field is set (the defaults are dev-only values) and read from a
    Secret; no literal secret anywhere, and no Secret object in git."""
    maps = config_maps(rendered, overlay)
    assert "Secret" not in {o["kind"] for o in rendered[overlay]}
    for name, deployment in deployments(rendered, overlay).items():
        cls = SETTINGS[name]
        env = container_env(service_container(deployment), maps)
        fields = {field: var for var, field in env_names(cls).items() if var in env}
        for field in cls.model_fields:
            if not required_secret(field):
                continue
            assert field in fields, f"{name}: {field} is not set"
            source = env[fields[field]]
            assert "secretKeyRef" in source.get("valueFrom", {}), f"{name}: {field} = {source}"
    for data in maps.values():
        leaked = [key for key in data if is_secret_field(key.lower())]
        assert not leaked, f"secret-like keys in a ConfigMap: {leaked}"


def test_services_and_disruption_budgets_match_the_pods(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    services = objects(rendered, overlay, "Service")
    budgets = objects(rendered, overlay, "PodDisruptionBudget")
    for name, deployment in deployments(rendered, overlay).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        container_port = service_container(deployment)["ports"][0]["containerPort"]
        (port,) = services[name]["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (container_port, "http"), name
        assert services[name]["spec"]["selector"] == selector, name
        assert budgets[name]["spec"]["selector"]["matchLabels"] == selector, name
        assert "maxUnavailable" in budgets[name]["spec"], name


def test_objects_live_in_the_overlay_namespace(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    namespace = NAMESPACES[overlay]
    for obj in rendered[overlay]:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == namespace
            labels = obj["metadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]


def test_one_image_with_an_explicit_tag(rendered: dict[str, list[Obj]], overlay: str) -> None:
    images = {
        container["image"]
        for deployment in deployments(rendered, overlay).values()
        for container in deployment["spec"]["template"]["spec"]["containers"]
    }
    assert len(images) == 1, images
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name.endswith("jakpreneur-pipeline") and tag not in ("", "latest"), image


def test_prod_scales_out_and_replicates_topics(rendered: dict[str, list[Obj]]) -> None:
    dev, prod = deployments(rendered, "dev"), deployments(rendered, "prod")
    for name in SETTINGS:
        assert dev[name]["spec"]["replicas"] == 1
        assert prod[name]["spec"]["replicas"] >= 2, name
        limit = {
            overlay: quantity(service_container(d[name])["resources"]["limits"]["memory"])
            for overlay, d in (("dev", dev), ("prod", prod))
        }
        assert limit["prod"] > limit["dev"], name
        spread = prod[name]["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    config = {o: generated(config_maps(rendered, o), "jakpreneur-config") for o in ("dev", "prod")}
    assert config["dev"]["TOPIC_REPLICATION_FACTOR"] == "1"
    assert config["prod"]["TOPIC_REPLICATION_FACTOR"] == "3"
    for overlay in ("dev", "prod"):
        assert config[overlay]["KAFKA_BOOTSTRAP_SERVERS"], overlay


def test_dev_notifications_reach_the_stand_in_sidecar(rendered: dict[str, list[Obj]]) -> None:
    pod = deployments(rendered, "dev")["notifications"]["spec"]["template"]["spec"]
    sidecar = {c["name"]: c for c in pod["containers"]}["providers"]
    assert sidecar["args"] == ["providers"]
    for probe in ("livenessProbe", "readinessProbe"):  # it listens on the pod's loopback
        assert sidecar[probe]["exec"]["command"][-3:] == ["-m", "deploy.healthcheck", "providers"]
    config = generated(config_maps(rendered, "dev"), "notifications-config")
    assert config["NOTIFICATIONS_WHATSAPP_BASE_URL"].startswith("http://127.0.0.1:8025/")
    assert config["NOTIFICATIONS_SMS_BASE_URL"].startswith("http://127.0.0.1:8025/")
    assert (config["NOTIFICATIONS_SMTP_HOST"], config["NOTIFICATIONS_SMTP_PORT"]) == (
        "127.0.0.1",
        "2525",
    )
    prod_pod = deployments(rendered, "prod")["notifications"]["spec"]["template"]["spec"]
    assert [c["name"] for c in prod_pod["containers"]] == ["service"]


# ------------------------------------------------------------------ Kafka: Strimzi users


def strict(schema: Any) -> Any:
    """An OpenAPI v3 schema of a CRD with unknown fields refused (the API server's strict
    field validation, as kubernetes-validate's strict mode for the built-in kinds)."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def crd_version(api_version: str) -> Obj:
    """The CRD's version entry that serves ``api_version`` (group/version)."""
    group, _, version = api_version.partition("/")
    assert group == STRIMZI_CRD["spec"]["group"], api_version
    served = {v["name"]: v for v in STRIMZI_CRD["spec"]["versions"] if v.get("served")}
    assert version in served, f"{api_version}: this Strimzi serves {sorted(served)}"
    return served[version]


def strimzi_schema() -> Any:
    """The schema of the CRD's storage version (what the spec of any served version is
    converted to; v1beta2 and v1 differ only in ACLs' deprecated `operation`)."""
    (storage,) = [v for v in STRIMZI_CRD["spec"]["versions"] if v.get("storage")]
    return strict(storage["schema"]["openAPIV3Schema"])


def kafka_users(rendered: dict[str, list[Obj]], overlay: str) -> dict[str, Obj]:
    return objects(rendered, overlay, "KafkaUser")


def test_kafka_users_match_strimzi_s_schema(rendered: dict[str, list[Obj]], overlay: str) -> None:
    schema = strimzi_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    users = kafka_users(rendered, overlay)
    assert users
    for name, user in users.items():
        errors = sorted(validator.iter_errors(user), key=str)
        assert not errors, "\n".join(f"{name} {list(e.absolute_path)}: {e.message}" for e in errors)
        assert STRIMZI_CRD["spec"]["names"]["kind"] == user["kind"]
        assert STRIMZI_CRD["spec"]["scope"] == "Namespaced" and user["metadata"]["namespace"]


def test_the_strimzi_schema_check_rejects_what_strimzi_would(
    rendered: dict[str, list[Obj]],
) -> None:
    validator = jsonschema.Draft7Validator(strimzi_schema())
    user = kafka_users(rendered, "dev")["registry"]
    acl = user["spec"]["authorization"]["acls"][0]
    for broken_acl in (
        {**acl, "operations": ["Reed"]},  # not an operation
        {**acl, "resource": {**acl["resource"], "type": "topics"}},  # not a resource type
        {**acl, "hosts": "*"},  # not a field
    ):
        spec = copy.deepcopy(user["spec"])
        spec["authorization"]["acls"][0] = broken_acl
        assert not validator.is_valid({**user, "spec": spec}), broken_acl
    assert not validator.is_valid({**user, "spec": {"authentication": {"type": "scram"}}})


def test_kafka_users_use_an_api_version_strimzi_serves(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    for user in kafka_users(rendered, overlay).values():
        crd_version(user["apiVersion"])


def test_checked_in_kafka_users_are_a_fresh_rendering_of_the_catalogue(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """After a change of the catalogue: `python -m tests.deploy.strimzi` writes them again."""
    spec = OVERLAY[overlay]
    assert spec.path.read_text() == spec.render(), (
        f"{spec.path} is stale: run python -m tests.deploy.strimzi"
    )
    kustomization = yaml.safe_load((spec.path.parent / "kustomization.yaml").read_text())
    assert spec.path.name in kustomization["resources"]
    fresh = {u["metadata"]["name"]: u for u in spec.users()}
    applied = kafka_users(rendered, overlay)
    assert applied.keys() == fresh.keys()
    for name, user in applied.items():
        namespace = user["metadata"].pop("namespace")
        assert namespace == NAMESPACES[overlay]
        assert user == fresh[name], name
    config = generated(config_maps(rendered, overlay), "jakpreneur-config")
    assert config["TOPIC_PREFIX"] == spec.prefix, "the ACLs name the topics of this prefix"


def test_every_principal_has_a_scram_user_of_the_cluster(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    users = kafka_users(rendered, overlay)
    expected = set(PRINCIPALS) - set(OVERLAY[overlay].without)
    assert set(users) == expected
    assert "simulator" in OVERLAY["prod"].without, "production has no simulator principal"
    for name, user in users.items():
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == CLUSTER, name
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}, name
        assert user["spec"]["authorization"]["type"] == "simple", name


def volume_of(pod: Obj, path: str) -> tuple[Obj, str]:
    """The volume a file path of the service container lies in, and its path inside it."""
    (container,) = [c for c in pod["containers"] if c["name"] == "service"]
    for mount in container["volumeMounts"]:
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            assert mount.get("readOnly") is True, mount
            return volume, path.removeprefix(root)
    raise AssertionError(f"{path} is in no mounted volume")


def test_each_service_logs_in_to_kafka_as_its_own_user_over_tls(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """KAFKA_SASL_USERNAME is the service's KafkaUser; the password is the `password` of the
    Secret Strimzi's User Operator makes for it (named like the user); SASL_SSL with the
    cluster CA that Strimzi keeps in Secret <cluster>-cluster-ca-cert, mounted."""
    maps = config_maps(rendered, overlay)
    users = kafka_users(rendered, overlay)
    assert set(SERVICES) == set(SETTINGS)
    for name, deployment in deployments(rendered, overlay).items():
        env = container_env(service_container(deployment), maps)
        config = generated(maps, "jakpreneur-config")
        assert env["KAFKA_SASL_USERNAME"] == {"value": name}
        assert name in users
        assert env["KAFKA_SASL_PASSWORD"] == {
            "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}}
        }
        for variable in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SSL_CAFILE"):
            source = env[variable].get("configMap", "")
            assert re.fullmatch(r"jakpreneur-config-[a-z0-9]{10}", source), (name, variable)
        assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        for server in config["KAFKA_BOOTSTRAP_SERVERS"].split(","):
            assert server.startswith(f"{CLUSTER}-kafka-bootstrap"), server
        pod = deployment["spec"]["template"]["spec"]
        volume, inside = volume_of(pod, config["KAFKA_SSL_CAFILE"])
        assert volume["secret"]["secretName"] == f"{CLUSTER}-cluster-ca-cert"
        assert {"key": "ca.crt", "path": inside} in volume["secret"]["items"]


def test_each_service_connects_to_mongodb_with_its_own_secret(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    maps = config_maps(rendered, overlay)
    seen = set()
    for name, deployment in deployments(rendered, overlay).items():
        env = container_env(service_container(deployment), maps)
        ref = env["MONGODB_URI"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{name}-mongodb", "key": "uri"}, name
        seen.add(ref["name"])
    assert len(seen) == len(SETTINGS)


def test_http_tokens_are_checked_against_the_overlay_s_issuer(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    maps = config_maps(rendered, overlay)
    config = generated(maps, "jakpreneur-config")
    for variable in ("AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL"):
        assert config[variable], f"{overlay}: {variable} is empty: the services refuse to start"
    for variable in ("AUTH_ISSUER", "AUTH_JWKS_URL"):
        assert urlsplit(config[variable]).scheme == "https", variable
    assert config["AUTH_JWKS_URL"].startswith(config["AUTH_ISSUER"].rstrip("/") + "/")
    for deployment in deployments(rendered, overlay).values():
        env = container_env(service_container(deployment), maps)
        assert {"AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL"} <= env.keys()
