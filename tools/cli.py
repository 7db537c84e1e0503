"""``jakpreneur``: the ops team's command line — topics, the dead-letter queues, the stack.

    jakpreneur topics list | describe TOPIC | create
    jakpreneur dlq list [--topic T] [--type CE_TYPE] [--since ISO] [--until ISO]
                        [--correlation-id C]
    jakpreneur dlq show DLQ_TOPIC PARTITION OFFSET
    jakpreneur dlq replay DLQ_TOPIC PARTITION OFFSET --by NAME
    jakpreneur stack up | down | status
    jakpreneur keys rotate [--database DB] [--batch N]
    jakpreneur token --role ROLE [--city C] [--kecamatan K] [--pendamping-id P]
                     [--participant-id ID] [--minutes M]
    jakpreneur simulate [--participants N]      jakpreneur bench [--participants N]

The listings (``topics list``, ``topics describe``, ``dlq list``, ``stack status``) take
``--output table`` (the default) or ``--output json``: one JSON document on stdout, a list
of objects with every column and whole values, for programs. A table cut to the terminal's
width is for eyes only; piped, it is printed whole. Notes go to stderr, so stdout stays
what was asked for.

A replay republishes the original record (value, key and envelope, without the ``dlq_*``
headers; personal fields the DLQ keeps encrypted opened with ``DLQ_PERSONAL_KEY``, from the
environment or a local stack's ``stack.env``) to the topic it failed on, and records who
replayed what on ``dlq-replays``. The service's inbox makes a second replay of the same
record a no-op.

Who it logs in to Kafka as: the ``KAFKA_*`` variables (``KAFKA_BOOTSTRAP_SERVERS``,
``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_CAFILE``: ops' principal on a
cluster), over those of a local stack's ``stack.env``, whose super user
(``KAFKA_ADMIN_USERNAME``/``KAFKA_ADMIN_PASSWORD``) is taken where set; ``--bootstrap``
replaces the address only.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table

from shared.access import replay_refusal
from shared.dlq_seal import SEAL_HEADERS, InvalidToken, PersonalSeal
from shared.kafka import DLQ_SUFFIX, REPLAYS_TOPIC, KafkaAccess
from shared.settings import ServiceSettings


class _Cli(typer.Typer):
    """Kafka's refusals and outages end a command with one line on stderr and status 1,
    not a traceback (aiokafka reports a refused login as a failed bootstrap)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except KafkaError as exc:
            notes.print(
                f"Kafka: {exc}. Check the address (KAFKA_BOOTSTRAP_SERVERS, --bootstrap) and "
                "the login (KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD, or a local stack's "
                "stack.env).",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(1)


app = _Cli(help=__doc__, no_args_is_help=True)
topics_app = typer.Typer(help="Topics and their partitions.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-letter queues: inspect and replay.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack (Kafka, mongod, services).", no_args_is_help=True)
keys_app = typer.Typer(help="The registry's PII keys: rotation.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(dlq_app, name="dlq")
app.add_typer(stack_app, name="stack")
app.add_typer(keys_app, name="keys")
console = Console()
notes = Console(stderr=True)

Bootstrap = Annotated[
    str,
    typer.Option(
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="the broker's address only (who logs in: KAFKA_SASL_*, or the stack's admin)",
    ),
]


class Output(enum.StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        help="table (for people) or json (one document, whole values, for programs)",
    ),
]


def ops_access(bootstrap: str = "") -> KafkaAccess:
    """Ops' login: the environment's ``KAFKA_*`` over the stack's ``stack.env``, its super
    user where ``KAFKA_ADMIN_USERNAME`` is set; ``bootstrap`` replaces the address only."""
    from tools.demo import stack_access

    return stack_access(bootstrap, admin=True)


def _on_terminal() -> bool:
    """Asked of stdout itself: rich's own guess can be forced (FORCE_COLOR) and then it
    would cut a piped table to 80 columns."""
    return sys.stdout.isatty()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def emit(rows: Sequence[dict[str, Any]], columns: dict[str, str], output: Output) -> None:
    """Print rows as a table (``columns``: key -> heading) or as one JSON document.

    On a terminal rich fits the table to the window; anywhere else nothing is cut, because
    whoever reads a pipe or a file cannot widen it.
    """
    if output is Output.json:
        sys.stdout.write(json.dumps(list(rows), default=str, ensure_ascii=False) + "\n")
        return
    table = Table(*columns.values())
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key in columns))
    out = console if _on_terminal() else Console(width=1_000_000, soft_wrap=True)
    out.print(table)


# ----------------------------------------------------------------------------- topics


async def list_topics(kafka: KafkaAccess) -> list[str]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if not t.startswith("__"))
    finally:
        await admin.close()


@topics_app.command("list")
def topics_list(bootstrap: Bootstrap = "", output: OutputOption = Output.table) -> None:
    """Every topic but Kafka's own; as a table, one name a line (grep-able, never cut)."""
    topics = asyncio.run(list_topics(ops_access(bootstrap)))
    if output is Output.json:
        emit([{"topic": t} for t in topics], {"topic": "topic"}, output)
    else:
        sys.stdout.write("".join(f"{t}\n" for t in topics))


PARTITION_COLUMNS = {
    "topic": "topic",
    "partition": "partition",
    "leader": "leader",
    "replicas": "replicas",
    "isr": "in sync",
    "offline_replicas": "offline",
}


@topics_app.command("describe")
def topics_describe(
    topic: str, bootstrap: Bootstrap = "", output: OutputOption = Output.table
) -> None:
    """The topic's partitions: leader, replicas, in-sync replicas."""

    async def describe() -> list[Any]:
        admin = AIOKafkaAdminClient(**ops_access(bootstrap).client_kwargs())
        await admin.start()
        try:
            return list(await admin.describe_topics([topic]))
        finally:
            await admin.close()

    rows: list[dict[str, Any]] = []
    for entry in asyncio.run(describe()):
        if entry.get("error_code"):
            code = entry["error_code"]
            notes.print(
                f"{entry['topic']}: Kafka error {code}" + (" (no such topic)" if code == 3 else "")
            )
            raise typer.Exit(1)
        for part in sorted(entry["partitions"], key=lambda part: part["partition"]):
            rows.append(
                {
                    "topic": entry["topic"],
                    **{k: part.get(k) for k in PARTITION_COLUMNS if k != "topic"},
                }
            )
    emit(rows, PARTITION_COLUMNS, output)


TOPIC_AUTHORIZATION_FAILED = 29  # Kafka's error code


class TopicLayout(BaseSettings):
    """What shapes a deployment's topics: the ``TOPIC_*`` variables, read as the services
    read them (the same fields and defaults as :class:`ServiceSettings`)."""

    model_config = SettingsConfigDict(extra="ignore")

    topic_prefix: str = ServiceSettings.model_fields["topic_prefix"].default
    topic_partitions: int = Field(
        default=ServiceSettings.model_fields["topic_partitions"].default, ge=1
    )
    topic_replication_factor: int = Field(
        default=ServiceSettings.model_fields["topic_replication_factor"].default, ge=1
    )
    topic_retention_ms: int = ServiceSettings.model_fields["topic_retention_ms"].default
    topic_personal_retention_ms: int = ServiceSettings.model_fields[
        "topic_personal_retention_ms"
    ].default

    def settings(self, kafka: KafkaAccess) -> ServiceSettings:
        """As :func:`shared.kafka.ensure_topics` takes them, logged in as ``kafka``. Built
        without a service's start-up checks (its secrets, its token issuer): the CLI is an
        operator's tool, not a service."""
        return ServiceSettings.model_construct(
            service_name="jakpreneur-cli",
            kafka_bootstrap_servers=kafka.bootstrap_servers,
            kafka_security_protocol=kafka.security_protocol,
            kafka_sasl_mechanism=kafka.sasl_mechanism,
            kafka_sasl_username=kafka.username,
            kafka_sasl_password=SecretStr(kafka.password),
            kafka_ssl_cafile=kafka.ssl_cafile,
            **self.model_dump(),
        )


@topics_app.command("create")
def topics_create(bootstrap: Bootstrap = "") -> None:
    """Create every topic of the catalogue (and its .dlq), as the services would at their
    start: under ``TOPIC_PREFIX``, with ``TOPIC_PARTITIONS``, ``TOPIC_REPLICATION_FACTOR``,
    ``TOPIC_RETENTION_MS`` and, for the topics of events with personal fields and their
    DLQs, ``TOPIC_PERSONAL_RETENTION_MS``. Topics that exist get that retention (and
    cleanup policy) where theirs differs: each one changed is named on stderr."""
    from shared.contracts import CATALOGUE
    from shared.kafka import TopicConfigError, align_topics, ensure_topics

    settings = TopicLayout().settings(ops_access(bootstrap))

    async def create_and_align() -> tuple[list[str], dict[str, dict[str, str]]]:
        made = await ensure_topics(settings, [e.name for e in CATALOGUE])
        admin = AIOKafkaAdminClient(**KafkaAccess.of(settings).client_kwargs())
        await admin.start()
        try:
            return made, await align_topics(admin, settings, made)
        finally:
            await admin.close()

    try:
        made, changed = asyncio.run(create_and_align())
    except TopicConfigError as exc:
        if exc.code != TOPIC_AUTHORIZATION_FAILED:
            notes.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        # ops' ACLs create topics; describing and altering their configs takes an admin
        notes.print(
            f"existing topics' retention not checked: {exc} (DescribeConfigs and "
            "AlterConfigs rights are needed; run as the cluster's admin to align them)",
            highlight=False,
            soft_wrap=True,
        )
        made, changed = asyncio.run(ensure_topics(settings, [e.name for e in CATALOGUE])), {}
    for topic, configs in sorted(changed.items()):
        shown = " ".join(f"{k}={v}" for k, v in sorted(configs.items()))
        notes.print(f"{topic}: set {shown}", highlight=False, soft_wrap=True)
    console.print(f"{len(made)} topics present, {len(changed)} reconfigured")


# -------------------------------------------------------------------------------- DLQ


async def read_dlq(kafka: KafkaAccess, topics: list[str]) -> list[dict[str, Any]]:
    """Every record of the given DLQ topics, from their beginning to their current end."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())
        ]
        if not partitions:
            return out
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    out.append(
                        {
                            "topic": r.topic,
                            "partition": r.partition,
                            "offset": r.offset,
                            "key": r.key,
                            "value": r.value,
                            "headers": {
                                k: (v or b"").decode("utf-8", "replace") for k, v in r.headers
                            },
                        }
                    )
    finally:
        # aiokafka's stop() of a consumer that never had an assignment can raise
        # CancelledError from its own committed-offsets task; nothing is lost by it.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
    return out


def _matches(
    record: dict[str, Any],
    ce_type: str | None,
    since: str | None,
    until: str | None,
    correlation_id: str | None,
) -> bool:
    h = record["headers"]
    failed_at = h.get("dlq_failed_at", "")
    return (
        (ce_type is None or h.get("ce_type") == ce_type)
        and (since is None or failed_at >= since)
        and (until is None or failed_at <= until)
        and (correlation_id is None or h.get("ce_correlationid") == correlation_id)
    )


DLQ_COLUMNS = {
    "dlq_topic": "dlq topic",
    "partition": "partition",
    "offset": "offset",
    "error": "error",
    "message": "message",
    "failed_at": "failed at",
    "ce_type": "ce_type",
}


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str | None, typer.Option(help="an event topic or its .dlq")] = None,
    ce_type: Annotated[str | None, typer.Option("--type")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, failed at or after")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, failed at or before")] = None,
    correlation_id: Annotated[str | None, typer.Option()] = None,
    bootstrap: Bootstrap = "",
    output: OutputOption = Output.table,
) -> None:
    """Dead-lettered records, oldest first per partition. The JSON form also carries every
    header of each record (the envelope and the ``dlq_*`` ones)."""
    kafka = ops_access(bootstrap)
    if topic:
        dlqs = [topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX]
    else:
        dlqs = [t for t in asyncio.run(list_topics(kafka)) if t.endswith(DLQ_SUFFIX)]
    records = asyncio.run(read_dlq(kafka, dlqs))
    # On a terminal the message and time are shortened so a row fits a line; elsewhere whole.
    short = output is Output.table and _on_terminal()
    rows = []
    for r in records:
        if _matches(r, ce_type, since, until, correlation_id):
            h = r["headers"]
            message = h.get("dlq_error_message", "")
            failed_at = h.get("dlq_failed_at", "")
            rows.append(
                {
                    "dlq_topic": r["topic"],
                    "partition": r["partition"],
                    "offset": r["offset"],
                    "error": h.get("dlq_error_type", ""),
                    "message": message[:60] if short else message,
                    "failed_at": failed_at[:19] if short else failed_at,
                    "ce_type": h.get("ce_type", ""),
                    "headers": h,
                }
            )
    emit(rows, DLQ_COLUMNS, output)


@dlq_app.command("show")
def dlq_show(dlq_topic: str, partition: int, offset: int, bootstrap: Bootstrap = "") -> None:
    """One dead letter: its headers and value, whose encrypted personal fields (named by
    ``dlq_personal_encrypted``; the whole value under ``dlq_value_encrypted``) are shown
    as ``[encrypted]``."""
    from shared.dlq_seal import masked

    record = _find(ops_access(bootstrap), dlq_topic, partition, offset)
    value = masked(record["value"] or b"", record["headers"])
    console.print_json(json.dumps({"headers": record["headers"], "value": value}))


def _find(kafka: KafkaAccess, dlq_topic: str, partition: int, offset: int) -> dict[str, Any]:
    for record in asyncio.run(read_dlq(kafka, [dlq_topic])):
        if record["partition"] == partition and record["offset"] == offset:
            return record
    raise typer.BadParameter(f"no record {dlq_topic}[{partition}]@{offset}")


class ReplayRefused(RuntimeError):
    """The dead letter may not go back (see :func:`shared.access.replay_refusal`), or the
    broker would not take the replay's record on ``dlq-replays``."""


def dlq_seal() -> PersonalSeal:
    """The key of the dead letters' personal fields, as the services have it:
    ``DLQ_PERSONAL_KEY`` from the environment, else the local stack's ``stack.env``, else
    (``JAKPRENEUR_ENV=development`` only) the development key."""
    import os

    from deploy.local.stack import stack_env  # JAKPRENEUR_RUN_DIR's, else .run's
    from shared.settings import DEV_DLQ_PERSONAL_KEY, DEVELOPMENT

    key = os.environ.get("DLQ_PERSONAL_KEY") or stack_env().get("DLQ_PERSONAL_KEY")
    if not key and os.environ.get("JAKPRENEUR_ENV") == DEVELOPMENT:
        key = DEV_DLQ_PERSONAL_KEY
    if not key:
        raise ReplayRefused(
            "not replayed: its personal fields are encrypted and there is no "
            "DLQ_PERSONAL_KEY (nor a local stack's stack.env)"
        )
    try:
        return PersonalSeal(key)
    except ValueError:
        raise ReplayRefused("not replayed: DLQ_PERSONAL_KEY is not a Fernet key") from None


def _opened(record: dict[str, Any], seal: PersonalSeal | None) -> bytes:
    """The dead letter's original value: its encrypted personal fields opened."""
    value: bytes = record["value"]
    if not any(name in record["headers"] for name in SEAL_HEADERS):
        return value
    try:
        return (seal or dlq_seal()).open(value, record["headers"])
    except InvalidToken:
        raise ReplayRefused(
            "not replayed: DLQ_PERSONAL_KEY does not open its personal fields (a key of "
            "the services' ring is missing?)"
        ) from None


async def replay(
    kafka: KafkaAccess, record: dict[str, Any], by: str, seal: PersonalSeal | None = None
) -> dict[str, Any]:
    """Republish a dead-lettered record where it failed, its personal fields opened with
    ``seal`` (default: :func:`dlq_seal`), and record the replay (as ops: it writes a
    service's topic, which only ops and the stack's super user may)."""
    refusal = replay_refusal(record["topic"], record["headers"])
    if refusal is not None:
        raise ReplayRefused(f"not replayed: {refusal}")
    value = _opened(record, seal)
    headers = {k: v for k, v in record["headers"].items() if not k.startswith("dlq_")}
    target = record["headers"]["dlq_original_topic"]
    entry = {
        "by": by,
        "at": datetime.now(UTC).isoformat(),
        "dlq_topic": record["topic"],
        "dlq_partition": record["partition"],
        "dlq_offset": record["offset"],
        "original_topic": target,
        "ce_id": headers.get("ce_id"),
        "error_type": record["headers"].get("dlq_error_type"),
    }
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        if REPLAYS_TOPIC not in await admin.list_topics():
            from aiokafka.admin import NewTopic

            answer = await admin.create_topics([NewTopic(REPLAYS_TOPIC, 1, 1)])
            # (topic, error code[, message, ...]); 36: another replay created it first
            refused = [(e[1], e[2] if len(e) > 2 else "") for e in answer.topic_errors]
            refused = [(code, why) for code, why in refused if code not in (0, 36)]
            if refused:  # before anything is republished: no replay goes unrecorded
                code, why = refused[0]
                raise ReplayRefused(
                    f"{kafka.username or 'this client'} may not create {REPLAYS_TOPIC} "
                    f"(Kafka error {code}: {why}); nothing was replayed"
                )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            target,
            value,
            key=record["key"],
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
        await producer.send_and_wait(REPLAYS_TOPIC, json.dumps(entry).encode())
    finally:
        await producer.stop()
    return entry


@dlq_app.command("replay")
def dlq_replay(
    dlq_topic: str,
    partition: int,
    offset: int,
    by: Annotated[str, typer.Option(help="who replays (recorded on dlq-replays)")],
    bootstrap: Bootstrap = "",
) -> None:
    kafka = ops_access(bootstrap)
    try:
        entry = asyncio.run(replay(kafka, _find(kafka, dlq_topic, partition, offset), by))
    except ReplayRefused as exc:
        notes.print(str(exc))
        raise typer.Exit(1) from None
    console.print(f"replayed to {entry['original_topic']} (ce_id {entry['ce_id']}) by {by}")


# ------------------------------------------------------------------------------ stack


@stack_app.command("up")
def stack_up() -> None:
    from deploy.local.stack import main as stack_main

    _run_stack(stack_main, "up")


@stack_app.command("down")
def stack_down() -> None:
    from deploy.local.stack import main as stack_main

    _run_stack(stack_main, "down")


STACK_COLUMNS = {
    "name": "process",
    "pid": "pid",
    "state": "state",
    "restarts": "restarts",
    "last_exit": "last exit",
    "since": "since",
    "address": "address",
}


@stack_app.command("status")
def stack_status(output: OutputOption = Output.table) -> None:
    """Each process of the local stack (``make up`` or ``make run``): pid, state (starting,
    running, backoff, stopped), restarts and its last exit code, from the supervisor's state
    file in the run directory (``JAKPRENEUR_RUN_DIR``, else ``.run``)."""
    from deploy.local.stack import STATE_FILE, read_state

    state = read_state(STATE_FILE)
    if state is None:
        notes.print(f"no stack running (no live supervisor in {STATE_FILE})")
        if output is Output.json:
            emit([], STACK_COLUMNS, output)
        return
    notes.print(f"supervisor pid {state['supervisor_pid']}, as of {state['updated_at']}")
    emit(state["processes"], STACK_COLUMNS, output)


def _run_stack(entry: Any, command: str) -> None:
    import sys

    sys.argv = ["python -m deploy.local", command]
    entry()


# ------------------------------------------------------------------------------ keys


def mongodb_admin_uri(given: str) -> str:
    """MongoDB's admin, as ops log in: ``MONGODB_ADMIN_URI`` (or ``--mongodb-uri``), else
    the local stack's ``stack.env``; empty when neither names one."""
    if given:
        return given
    from deploy.local.stack import stack_env  # JAKPRENEUR_RUN_DIR's, else .run's

    return stack_env().get("MONGODB_ADMIN_URI", "")


@keys_app.command("rotate")
def keys_rotate(
    database: Annotated[
        str, typer.Option(envvar="REGISTRY_MONGODB_DATABASE", help="the registry's database")
    ] = "registry",
    mongodb_uri: Annotated[
        str,
        typer.Option(
            envvar="MONGODB_ADMIN_URI",
            show_default=False,
            help="MongoDB's admin (default: the local stack's stack.env)",
        ),
    ] = "",
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="documents per round")] = 500,
    jakpreneur_env: Annotated[str, typer.Option(envvar="JAKPRENEUR_ENV", hidden=True)] = "",
    output: OutputOption = Output.table,
) -> None:
    """Re-encrypt every stored NIK and KK under the current encryption key and re-hash every
    NIK under the hash ring's keys, with the keys the registry reads
    (``REGISTRY_PII_ENCRYPTION_KEYS``/``REGISTRY_PII_HASH_KEYS``, else the single-key
    variables). To roll a key: put the new key first in the ring, keep the old one after it,
    deploy the registry, run this, then drop the old key from the ring (and, for the hash
    ring, run this once more so no hash under the dropped key stays behind).

    Safe to stop at any moment and to run again: each document is rewritten at once or not
    at all, and a second run finds nothing to do. Progress on stderr; exit status 1 when some
    document could not be rotated (no key of the ring opens it, or its NIK is another
    participant's), named by participant id in the summary."""
    from pymongo.errors import PyMongoError

    from services.registry.app import PiiKeys
    from services.registry.store import KeyRingError, RegistryStore
    from shared.mongo import make_client
    from shared.settings import DEVELOPMENT

    try:
        keys = PiiKeys()
    except KeyRingError as exc:
        notes.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    on_development = keys.development_keys()
    if on_development and jakpreneur_env != DEVELOPMENT:
        notes.print(
            f"[red]development keys in {', '.join(on_development)}; set the registry's keys "
            "(or JAKPRENEUR_ENV=development for a local stack)[/red]",
            highlight=False,
        )
        raise typer.Exit(2)
    uri = mongodb_admin_uri(mongodb_uri)
    if not uri:
        notes.print("[red]no MONGODB_ADMIN_URI (nor a local stack's stack.env)[/red]")
        raise typer.Exit(2)

    def progress(done: int, total: int) -> None:
        notes.print(f"{done}/{total} examined", highlight=False)

    async def rotate() -> dict[str, Any]:
        client = make_client(uri)
        try:
            store = RegistryStore(client, database, keys.pii_vault())
            return (await store.rotate_keys(batch, progress)).summary()
        finally:
            await client.close()

    try:
        summary = asyncio.run(rotate())
    except PyMongoError as exc:  # pymongo's text names hosts, never the password
        notes.print(f"[red]MongoDB: {exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if output is Output.json:
        sys.stdout.write(json.dumps({"database": database, **summary}) + "\n")
    else:
        console.print(
            f"{database}: {summary['rotated']} of {summary['stale_before']} rotated to "
            f"encryption key {summary['encryption_key']}, hash keys "
            f"{','.join(summary['hash_keys'])}; {len(summary['unreadable'])} unreadable, "
            f"{len(summary['conflicts'])} conflicting, {summary['changed_meanwhile']} changed "
            "meanwhile",
            highlight=False,
        )
        for name in ("unreadable", "conflicts"):
            if summary[name]:
                console.print(f"{name}: {' '.join(summary[name])}", highlight=False)
    if not summary["complete"]:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------ token


@app.command("token")
def token_command(
    role: Annotated[
        str, typer.Option(help="ops, dinas, kota, kecamatan, pendamping, bank, participant")
    ],
    city: Annotated[str | None, typer.Option(help="kota, kecamatan: the city")] = None,
    kecamatan: Annotated[str | None, typer.Option(help="kecamatan: the kecamatan")] = None,
    pendamping_id: Annotated[str | None, typer.Option(help="pendamping: their mentor id")] = None,
    participant_id: Annotated[str | None, typer.Option(help="participant: their id")] = None,
    minutes: Annotated[int, typer.Option(min=1, max=24 * 60, help="valid for")] = 15,
) -> None:
    """A short-lived bearer token of the local stack's development issuer (its key is in the
    run directory while the stack runs), on stdout: for curl, or the dashboard's address
    (``/dashboard#token=...``). The services of a deployment do not accept it."""
    from deploy.local.identity import DevelopmentIdentity
    from deploy.local.stack import RUN_DIR, stack_env
    from shared.auth import Forbidden, principal_from_claims

    claims = {
        "city": city,
        "kecamatan": kecamatan,
        "pendamping_id": pendamping_id,
        "participant_id": participant_id,
    }
    given = {name: value for name, value in claims.items() if value}
    try:  # the role table's own check: a known role with the claims its scope needs
        principal_from_claims({"sub": f"dev-{role}", "role": role, **given})
    except Forbidden as exc:
        notes.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        identity = DevelopmentIdentity.load(RUN_DIR / "auth")
    except FileNotFoundError:
        notes.print(f"no local stack's token key in {RUN_DIR / 'auth'}: make up (or make run)")
        raise typer.Exit(1) from None
    token = identity.mint(role, ttl_s=minutes * 60, **given)
    sys.stdout.write(token + "\n")
    registry = stack_env().get("REGISTRY_URL")
    if registry:
        notes.print(f"dashboard: {registry}/dashboard#token={token}", soft_wrap=True)


@app.command("simulate")
def simulate_command(participants: int = 1000, seed: int = 2021) -> None:
    """Run the simulator against the running stack (as the simulator's principal)."""
    from tools.demo import stack_access
    from tools.simulate import simulate

    result = asyncio.run(simulate(stack_access(), participants=participants, seed=seed))
    console.print_json(json.dumps({"intended": result.intended, "settled": result.settled}))


@app.command("bench")
def bench_command(participants: int = 50_000) -> None:
    """Run the benchmark (it starts its own stack)."""
    import sys

    from tools.bench import main as bench_main

    sys.argv = ["jakpreneur bench", "--participants", str(participants)]
    bench_main()
