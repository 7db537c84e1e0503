"""deploy/compose.yaml and deploy/.env.example, checked offline: the Compose Specification
schema, compose-go (the loader of Docker Compose), the variables, and what the services'
Settings accept."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest

from deploy.kafka_users import USERS, password_variable
from shared.access import ADMIN
from tests.deploy import tools
from tests.deploy.support import (
    COMPOSE_FILE,
    DEPLOY,
    DEPLOYED_INFRA,
    ENV_EXAMPLE,
    NON_ROOT_UID,
    ROOT,
    SETTINGS,
    MissingVariable,
    default_port,
    documented_names,
    env_names,
    infra_names,
    interpolate,
    prefix_of,
    required_secret,
    secret_by_name,
    server_properties,
    strings_in,
    variables_in,
)

SCHEMA = Path(__file__).with_name("schemas") / "compose-spec.json"
# The passwords of the Kafka principals (every one of the catalogue's, the admin and the
# controller) and of the MongoDB users (the admin and one per service).
KAFKA_PASSWORDS = {password_variable(user) for user in USERS} | {"KAFKA_CONTROLLER_PASSWORD"}
MONGODB_PASSWORDS = {f"MONGODB_{name.upper()}_PASSWORD" for name in (ADMIN, *SETTINGS)}
# Variables of .env.example that Compose itself uses (images, the Kafka cluster id, the
# passwords it hands to the broker, the inits and the services), not the services directly.
COMPOSE_ONLY = {
    "JAKPRENEUR_IMAGE",
    "KAFKA_IMAGE",
    "MONGO_IMAGE",
    "KAFKA_CLUSTER_ID",
    *KAFKA_PASSWORDS,
    *MONGODB_PASSWORDS,
}
INFRA = ("kafka", "mongo")
ONE_SHOT = ("tls-init", "kafka-init", "mongo-init")
# A required variable: compose stops when it is empty.
REQUIRED = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):\?[^}]+\}")


def services_of(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The four services' compose entries."""
    return {name: compose["services"][name] for name in SETTINGS}


def environment(entry: dict[str, Any]) -> dict[str, str]:
    env = entry.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_docker_compose_loads_the_file_as_these_checks_read_it(
    compose: dict[str, Any], compose_go: dict[str, Any]
) -> None:
    """compose-go (the loader of `docker compose`) accepts the file, and resolves every
    service's environment and published ports exactly as the checks here do."""
    assert compose_go["name"] == "jakpreneur"
    assert set(compose_go["services"]) == set(compose["services"])
    for name, entry in compose["services"].items():
        theirs = compose_go["services"][name]
        ours = {key: str(value) for key, value in environment(entry).items()}
        assert ours == {key: str(value) for key, value in theirs.get("environment", {}).items()}
        published = [
            f"{p['host_ip']}:{p['published']}:{p['target']}" for p in theirs.get("ports", [])
        ]
        assert published == entry.get("ports", []), name
        conditions = {dep: d["condition"] for dep, d in theirs.get("depends_on", {}).items()}
        assert conditions == {dep: d["condition"] for dep, d in entry.get("depends_on", {}).items()}


def test_docker_compose_refuses_to_start_without_the_secrets(
    env_example: dict[str, str],
) -> None:
    with pytest.raises(RuntimeError) as refused:
        tools.compose_config(COMPOSE_FILE, ENV_EXAMPLE)  # the example: secrets left empty
    secrets = [name for name in env_example if secret_by_name(name)]
    assert {
        "REGISTRY_PII_HASH_KEY",
        "REGISTRY_PII_ENCRYPTION_KEY",
        "NOTIFICATIONS_WHATSAPP_TOKEN",
        "NOTIFICATIONS_SMS_API_KEY",
        "KAFKA_REGISTRY_PASSWORD",
        "MONGODB_REGISTRY_PASSWORD",
    } <= set(secrets)
    # compose-go names the first missing variable it meets; each one is required (below).
    assert re.search(r"required variable (\w+) is missing a value", str(refused.value))


def test_the_schema_rejects_a_misspelt_key(compose: dict[str, Any]) -> None:
    """The vendored schema really constrains services (not a permissive stand-in)."""
    schema = json.loads(SCHEMA.read_text())
    broken = {**compose, "services": {"registry": {"image": "x", "restart_policy": "always"}}}
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_every_variable_is_documented_in_the_env_example(
    compose_raw: dict[str, Any], env_example: dict[str, str]
) -> None:
    used = {name for text in strings_in(compose_raw) for name in variables_in(text)}
    assert used, "compose.yaml reads no variable"
    assert used - env_example.keys() == set(), "used by compose.yaml, missing in .env.example"
    assert env_example.keys() - used == set(), "in .env.example, unused by compose.yaml"
    docs = documented_names(ENV_EXAMPLE.read_text())
    assert [name for name, comments in docs.items() if not comments] == []


def test_env_example_names_are_settings_fields(env_example: dict[str, str]) -> None:
    """A misspelt REGISTRY_PII_HASHKEY would be ignored by the service (extra="ignore")."""
    for name in env_example:
        owner = next((s for s, cls in SETTINGS.items() if name.startswith(prefix_of(cls))), None)
        if owner is not None:
            assert name in env_names(SETTINGS[owner]), f"{name} is no {owner} setting"
        else:
            assert name in infra_names() | COMPOSE_ONLY, f"{name} is read by nothing"


def test_env_example_commits_no_secret(env_example: dict[str, str]) -> None:
    secrets = [name for name in env_example if secret_by_name(name)]
    assert {"REGISTRY_PII_HASH_KEY", "NOTIFICATIONS_WHATSAPP_TOKEN"} <= set(secrets)
    assert {name: env_example[name] for name in secrets if env_example[name]} == {}


def test_secrets_are_required_variables_never_literals(compose_raw: dict[str, Any]) -> None:
    """Each secret field of a service is set (its default is a dev-only value) from a
    ``${NAME:?...}`` variable of a secret's name: never a literal, and `compose up` stops
    when it is empty."""
    for service, entry in services_of(compose_raw).items():
        fields = env_names(SETTINGS[service])
        env = environment(entry)
        set_by = {fields[name]: name for name in env if name in fields}
        secrets = {
            field
            for field in SETTINGS[service].model_fields
            if secret_by_name(field) and required_secret(field)
        }
        assert secrets <= set_by.keys(), f"{service} leaves {secrets - set_by.keys()} at defaults"
        for field in secrets:
            name = set_by[field]
            match = REQUIRED.fullmatch(env[name])
            assert match and secret_by_name(match["name"]), f"{service}: {name} = {env[name]}"
            with pytest.raises(MissingVariable):
                interpolate(env[name], {})


# Where a secret sits inside a longer value: JAAS options, a connection string's password.
_EMBEDDED = re.compile(
    r"""\b(?:password|user_\w+)=(?P<quote>["']?)(?P<jaas>\$\{[^}]*\}|[^"';\s]*)(?P=quote)"""
    r"|://[^:/@\s]+:(?P<uri>\$\{[^}]*\}|[^@\s$]*)@"
)
# A variable that holds a secret by its name (not, e.g., KAFKA_SSL_KEYSTORE_TYPE).
_SECRET_VARIABLE = re.compile(r"(KEY|TOKEN|PASSWORD|SECRET)$")


def test_no_secret_is_a_literal_anywhere(compose_raw: dict[str, Any]) -> None:
    """In every container: a secret's variable, a JAAS password and a URI's password are
    each one required variable of a secret's name; a secret variable is never read with a
    default, and never outside that form."""
    embedded_found = 0
    for name, entry in compose_raw["services"].items():
        for key, value in environment(entry).items():
            where = f"{name}: {key}"
            if _SECRET_VARIABLE.search(key):
                match = REQUIRED.fullmatch(value)
                assert match and secret_by_name(match["name"]), where
            for embedded in _EMBEDDED.finditer(value):
                secret = embedded["jaas"] if embedded["jaas"] is not None else embedded["uri"]
                match = REQUIRED.fullmatch(secret)
                assert match and secret_by_name(match["name"]), f"{where}: {secret!r}"
                embedded_found += 1
    # the broker's admin and controller (password and user_ each), a URI per service
    assert embedded_found == 4 + len(SETTINGS)
    for text in strings_in(compose_raw):
        for name in variables_in(text):
            if secret_by_name(name):
                assert re.search(r"\$\{" + name + r"(?=[:}])", text), name
                assert not re.search(r"\$\{" + name + r":?[-+]", text), f"{name} has a default"


def test_service_environment_names_are_settings_fields(compose: dict[str, Any]) -> None:
    for service, entry in services_of(compose).items():
        accepted = env_names(SETTINGS[service])
        unknown = set(environment(entry)) - set(accepted)
        assert not unknown, f"{service} does not read {sorted(unknown)}"
        assert infra_names() & set(environment(entry)) >= DEPLOYED_INFRA, service


def test_services_bind_all_interfaces_and_publish_on_loopback(compose: dict[str, Any]) -> None:
    for service, entry in services_of(compose).items():
        env = environment(entry)
        prefix = prefix_of(SETTINGS[service])
        assert env.get(f"{prefix}HTTP_HOST") == "0.0.0.0", service
        port = int(env.get(f"{prefix}HTTP_PORT", default_port(service)))
        assert entry["ports"] == [f"127.0.0.1:{port}:{port}"], service
        assert entry["command"] == [service]
    for name, entry in compose["services"].items():
        for mapping in entry.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} widely"


def test_services_wait_for_healthy_infrastructure(compose: dict[str, Any]) -> None:
    for service, entry in services_of(compose).items():
        assert entry["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "kafka-init": {"condition": "service_completed_successfully"},
            "mongo": {"condition": "service_healthy"},
            "mongo-init": {"condition": "service_completed_successfully"},
        }, service
    assert compose["services"]["kafka"]["depends_on"] == {
        "tls-init": {"condition": "service_completed_successfully"}
    }
    for init, server in (("kafka-init", "kafka"), ("mongo-init", "mongo")):
        assert compose["services"][init]["depends_on"] == {server: {"condition": "service_healthy"}}
    for name in INFRA:
        assert compose["services"][name]["healthcheck"]["test"], name


def test_one_shot_services_are_awaited_by_a_long_running_one(compose: dict[str, Any]) -> None:
    """`up --wait` fails on an exited container unless a running service depends on it
    completing."""
    services = compose["services"]
    one_shot = [name for name, entry in services.items() if entry.get("restart") == "no"]
    assert sorted(one_shot) == sorted(ONE_SHOT)
    for name in one_shot:
        assert any(
            entry.get("depends_on", {}).get(name, {}).get("condition")
            == "service_completed_successfully"
            for entry in services.values()
        ), name


def test_services_are_hardened(compose: dict[str, Any]) -> None:
    for name in (*SETTINGS, "providers", "tls-init", "kafka-init"):
        entry = compose["services"][name]
        assert entry["read_only"] is True, name
        assert any(str(t).split(":")[0] == "/tmp" for t in entry["tmpfs"]), name
        assert entry["user"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}", name
        assert entry["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in entry["security_opt"], name
        assert entry["deploy"]["resources"]["limits"]["memory"], name
        build = entry["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            ROOT / "deploy" / "Dockerfile"
        )


def test_service_healthchecks_probe_their_own_service(compose: dict[str, Any]) -> None:
    for service, entry in services_of(compose).items():
        test = entry["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "deploy.healthcheck"], service
        assert test[4] == service
        assert test[5:] == ["--path", "/readyz"]
    assert compose["services"]["providers"]["healthcheck"]["test"][4] == "providers"


def kafka_env(compose: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}


def test_kafka_is_a_single_kraft_node_without_topic_auto_creation(
    compose: dict[str, Any],
) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = kafka_env(compose)
    props = server_properties(env)
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    node = props["node.id"]
    assert props["controller.quorum.voters"] == f"{node}@127.0.0.1:9093"
    assert "CONTROLLER://127.0.0.1:9093" in props["listeners"].split(",")
    assert len(env["CLUSTER_ID"]) == 22
    advertised = dict(item.split("://") for item in props["advertised.listeners"].split(","))
    bootstrap = environment(compose["services"]["registry"])["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap in advertised.values(), "the services must use an advertised listener"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    # The image checks a keystore of its own when an advertised listener is literally
    # SSL:// or SASL_SSL://; these are named listeners, configured by the properties below.
    assert "SSL://" not in env["KAFKA_ADVERTISED_LISTENERS"]


def test_kafka_takes_clients_over_sasl_ssl_only_and_nothing_without_an_acl(
    compose: dict[str, Any],
) -> None:
    props = server_properties(kafka_env(compose))
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    listeners = {
        name: address for name, address in (i.split("://") for i in props["listeners"].split(","))
    }
    assert set(protocols) == set(listeners)
    controllers = props["controller.listener.names"].split(",")
    for name, protocol in protocols.items():
        if name in controllers:  # the node's own, on its loopback, with a password
            assert protocol == "SASL_PLAINTEXT" and listeners[name].startswith("127.0.0.1:")
            assert props[f"listener.name.{name.lower()}.sasl.enabled.mechanisms"] == "PLAIN"
        else:
            assert protocol == "SASL_SSL", name
            mechanisms = props[f"listener.name.{name.lower()}.sasl.enabled.mechanisms"]
            assert "SCRAM-SHA-512" in mechanisms.split(","), name
            for mechanism in mechanisms.split(","):  # a login module for each
                assert props[f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config"]
    assert props["inter.broker.listener.name"] not in controllers
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == f"User:{ADMIN};User:controller"
    assert (props["ssl.keystore.type"], props["ssl.truststore.type"]) == ("PEM", "PEM")


def volume_mounts(entry: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Each named volume of a container -> (where, read-only)."""
    mounts = {}
    for volume in entry.get("volumes", []):
        source, target, *mode = volume.split(":")
        mounts[source] = (target, mode == ["ro"])
    return mounts


def test_the_broker_key_reaches_the_broker_alone_and_the_ca_every_client(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    command = services["tls-init"]["command"]
    assert command[:3] == ["python", "-m", "deploy.tls"]
    ca_dir, broker_dir = command[3:5]
    names = [command[i + 1] for i, arg in enumerate(command) if arg in ("--dns", "--ip")]
    props = server_properties(kafka_env(compose))
    hosts = {a.split("://")[1].rsplit(":", 1)[0] for a in props["advertised.listeners"].split(",")}
    assert hosts <= set(names), "the certificate must name every advertised host"
    tls_init = volume_mounts(services["tls-init"])
    assert tls_init == {"kafka-ca": (ca_dir, False), "kafka-tls": (broker_dir, False)}
    users = {name for name, entry in services.items() if "kafka-tls" in volume_mounts(entry)}
    assert users == {"tls-init", "kafka"}
    kafka_tls, read_only = volume_mounts(services["kafka"])["kafka-tls"]
    assert read_only
    assert props["ssl.keystore.location"] == f"{kafka_tls}/kafka.pem"
    assert props["ssl.truststore.location"] == f"{kafka_tls}/ca.crt"
    assert services["kafka"]["group_add"] == [str(NON_ROOT_UID)], "kafka.pem is 0440"
    for name in (*SETTINGS, "kafka-init"):
        env = environment(services[name])
        target, read_only = volume_mounts(services[name])["kafka-ca"]
        assert read_only and env["KAFKA_SSL_CAFILE"] == f"{target}/ca.crt", name


def test_every_principal_of_the_catalogue_gets_its_scram_credential(
    compose_raw: dict[str, Any],
) -> None:
    """kafka-init logs in as the admin (PLAIN, the admin's password of the broker's JAAS
    line) and is handed KAFKA_<PRINCIPAL>_PASSWORD of each principal (deploy/kafka_users.py
    refuses to run without one of them)."""
    init = compose_raw["services"]["kafka-init"]
    assert init["command"] == ["python", "-m", "deploy.kafka_users"]
    env = environment(init)
    given = {
        n for n in env if re.fullmatch(r"KAFKA_\w+_PASSWORD", n) and n != "KAFKA_SASL_PASSWORD"
    }
    assert given == {password_variable(user) for user in USERS}
    for name in given:
        match = REQUIRED.fullmatch(env[name])
        assert match and match["name"] == name, name
    assert (env["KAFKA_SASL_MECHANISM"], env["KAFKA_SASL_USERNAME"]) == ("PLAIN", ADMIN)
    assert env["KAFKA_SASL_PASSWORD"] == env[password_variable(ADMIN)]
    jaas = kafka_env(compose_raw)["KAFKA_LISTENER_NAME_INTERNAL_PLAIN_SASL_JAAS_CONFIG"]
    admin_password = REQUIRED.fullmatch(env["KAFKA_SASL_PASSWORD"])
    assert admin_password
    assert f'username="{ADMIN}"' in jaas
    assert f'password="{admin_password[0]}"' in jaas
    assert f'user_{ADMIN}="{admin_password[0]}"' in jaas
    assert env["TOPIC_PREFIX"] == environment(compose_raw["services"]["registry"])["TOPIC_PREFIX"]


def test_each_service_logs_in_to_kafka_as_itself_over_sasl_ssl(
    compose_raw: dict[str, Any],
) -> None:
    init = environment(compose_raw["services"]["kafka-init"])
    for service, entry in services_of(compose_raw).items():
        env = environment(entry)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", service
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", service
        assert env["KAFKA_SASL_USERNAME"] == service
        # the very password kafka-init made that principal's credential with
        assert env["KAFKA_SASL_PASSWORD"] == init[password_variable(service)], service


def test_each_service_connects_to_mongodb_as_its_own_user(compose_raw: dict[str, Any]) -> None:
    """A user per service, named like it, whose password only mongo-init and that service
    get; mongo-init gives it readWrite on the service's own database and nothing else."""
    init = compose_raw["services"]["mongo-init"]
    init_env = environment(init)
    script = init["command"][-1]
    seen_passwords = set()
    for service, entry in services_of(compose_raw).items():
        uri = re.fullmatch(
            r"mongodb://(?P<user>[^:@/]+):(?P<password>\$\{[^}]+\})@(?P<hosts>[^/]+)/\?(?P<query>.*)",
            environment(entry)["MONGODB_URI"],
        )
        assert uri, service
        assert uri["user"] == service
        match = REQUIRED.fullmatch(uri["password"])
        assert match and match["name"] == f"MONGODB_{service.upper()}_PASSWORD", service
        assert init_env[match["name"]] == uri["password"]
        seen_passwords.add(uri["password"])
        assert parse_qs(uri["query"])["authSource"] == ["admin"], service
        database = SETTINGS[service].model_fields["mongodb_database"].default
        assert database == service, "mongo-init names each user's database after it"
    assert len(seen_passwords) == len(SETTINGS)
    assert set(init_env) == MONGODB_PASSWORDS
    assert "/^MONGODB_([A-Z]+)_PASSWORD$$/" in script
    assert 'const roles = [{role: "readWrite", db: user}];' in script
    assert 'roles: ["root"]' in script and 'user: "admin"' in script
    # the localhost exception: the first user is made over mongod's own loopback
    assert init["network_mode"] == "service:mongo"
    assert init["command"][1].startswith("mongodb://127.0.0.1:27017/")


def test_mongod_runs_with_a_keyfile_kept_beside_its_data(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    command = mongo["command"]
    keyfile = command[command.index("--keyFile") + 1]
    mounts = {target: source for source, (target, _ro) in volume_mounts(mongo).items()}
    assert mounts[str(Path(keyfile).parent)] == "mongo-config"
    script = mongo["entrypoint"][2]
    assert f"keyfile={keyfile}" in script and 'chmod 400 "$keyfile"' in script
    assert script.rstrip().endswith('exec docker-entrypoint.sh "$@"')


def test_mongo_is_a_replica_set_the_services_connect_to(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    assert re.fullmatch(r"mongo:8\.\d+", mongo["image"])
    command = mongo["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert "--bind_ip_all" in command
    init = " ".join(compose["services"]["mongo-init"]["command"])
    assert f'_id: "{replica_set}"' in init and "rs.initiate" in init
    assert 'codeName !== "NotYetInitialized"' in init, "initiate only a fresh set"
    for service, entry in services_of(compose).items():
        uri = urlsplit(environment(entry)["MONGODB_URI"])
        assert parse_qs(uri.query)["replicaSet"] == [replica_set], service
        member = f"{uri.hostname}:{uri.port}"
        assert f'host: "{member}"' in init, "the member's name must be the services' host"


def test_notifications_reach_the_stand_in_on_their_shared_loopback(
    compose: dict[str, Any],
) -> None:
    providers = compose["services"]["providers"]
    assert providers["network_mode"] == "service:notifications"
    assert providers["command"] == ["providers"]
    env = environment(compose["services"]["notifications"])
    assert urlsplit(env["NOTIFICATIONS_WHATSAPP_BASE_URL"]).netloc == "127.0.0.1:8025"
    assert urlsplit(env["NOTIFICATIONS_SMS_BASE_URL"]).netloc == "127.0.0.1:8025"
    assert (env["NOTIFICATIONS_SMTP_HOST"], env["NOTIFICATIONS_SMTP_PORT"]) == ("127.0.0.1", "2525")


def test_makefile_targets_run_compose_with_the_env_file() -> None:
    makefile = (ROOT / "Makefile").read_text()
    command = "docker compose -f deploy/compose.yaml --env-file deploy/.env"
    assert f"COMPOSE := {command}" in makefile
    assert re.search(
        r"^compose-up: deploy/\.env.*\n\t\$\(COMPOSE\) up -d --build --wait$", makefile, re.M
    )
    assert re.search(r"^compose-down: .*\n\t\$\(COMPOSE\) down$", makefile, re.M)
    assert re.search(
        r"^deploy/\.env: deploy/\.env\.example.*\n"
        r"\t.*-m deploy\.envfile deploy/\.env\.example \$@$",
        makefile,
        re.M,
    )
    phony = " ".join(re.findall(r"^\.PHONY:(.*)$", makefile, re.M)).split()
    assert {"compose-up", "compose-down"} <= set(phony)
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().split()
