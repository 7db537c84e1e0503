"""Who may do what on Kafka: the principals and their ACLs, generated from the catalogue.

The contract catalogue (``shared.contracts``) says who produces and who consumes each event;
this module turns that into Kafka ACLs, the one source of both the local launcher's grants
and the Kubernetes ``KafkaUser`` resources (``python -m shared.access`` prints them):

- a service reads the topics it consumes (with its own consumer group), writes the topics it
  produces and the DLQ of each topic it consumes, and may create them all (at start-up);
- an internal system (portal, LMS, ...) writes the topics of the events it produces and
  reads, with its own group, those it reacts to (the LMS a cohort, Bank DKI a referral, the
  portal a registration's outcome), nothing else;
- the simulator plays every internal system (writes every inbound fact) and reads every
  topic, so tools and tests can play the programme and watch it;
- ops reads every topic and DLQ and describes every group (inspection, lag), and writes and
  creates the topics (``jakpreneur dlq replay``, ``jakpreneur topics create``) and the log
  of replays;
- ``admin`` is the super user of a local stack (the benchmark's bare baseline, tests that
  forge what no principal may write); a cluster has its own operator instead.

Everything else is refused: the broker runs with ``allow.everyone.if.no.acl.found=false``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.contracts import CATALOGUE, consumed_by, event_of_topic, produced_by
from shared.kafka import DLQ_SUFFIX, REPLAYS_TOPIC, KafkaAccess

ANY = "*"  # a literal resource name that matches every resource of its type

SERVICES = ("coaching", "marketplace", "notifications", "registry")  # this repository's
SYSTEMS: tuple[str, ...] = tuple(
    sorted({p for e in CATALOGUE for p in (*e.producers, *e.consumers)} - set(SERVICES))
)
SIMULATOR, OPS, ADMIN = "simulator", "ops", "admin"
PRINCIPALS: tuple[str, ...] = (*SERVICES, *SYSTEMS, SIMULATOR, OPS)
INBOUND = tuple(e for e in CATALOGUE if set(e.producers) <= set(SYSTEMS))


@dataclass(frozen=True, order=True)
class Acl:
    """One allow rule, named as Kafka and Strimzi name them."""

    user: str
    resource: str  # "topic" | "group"
    name: str
    operation: str  # "Read" | "Write" | "Create" | "Describe" | "DescribeConfigs" | ...

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


def _topic(user: str, topic: str, *operations: str) -> list[Acl]:
    return [Acl(user, "topic", topic, op) for op in operations]


def acls(prefix: str = "") -> list[Acl]:
    """Every allow rule of one deployment, whose topics and groups carry ``prefix``."""
    rules: list[Acl] = []
    for service in SERVICES:
        for event in consumed_by(service):
            topic = prefix + event.name
            rules += _topic(service, topic, "Read", "Describe", "Create")
            rules += _topic(service, topic + DLQ_SUFFIX, "Write", "Describe", "Create")
        for event in produced_by(service):
            topic = prefix + event.name
            rules += _topic(service, topic, "Write", "Describe", "Create")
            rules += _topic(service, topic + DLQ_SUFFIX, "Describe", "Create")
        rules += [Acl(service, "group", prefix + service, op) for op in ("Read", "Describe")]
    for system in SYSTEMS:
        for event in produced_by(system):
            rules += _topic(system, prefix + event.name, "Write", "Describe")
        for event in consumed_by(system):
            rules += _topic(system, prefix + event.name, "Read", "Describe")
        if consumed_by(system):
            rules += [Acl(system, "group", prefix + system, op) for op in ("Read", "Describe")]
    for event in INBOUND:
        rules += _topic(SIMULATOR, prefix + event.name, "Write")
    for event in CATALOGUE:
        for topic in (prefix + event.name, prefix + event.name + DLQ_SUFFIX):
            rules += _topic(OPS, topic, "Write", "Create")
    return sorted(set(rules))


def cluster_rules() -> list[Acl]:
    """The rules that hold for every prefix: the simulator and ops read every topic and
    describe every group; ops writes the log of DLQ replays (``jakpreneur dlq replay``)."""
    rules = [
        Acl(user, resource, ANY, op)
        for user in (SIMULATOR, OPS)
        for resource, ops in (("topic", ("Read", "Describe")), ("group", ("Describe",)))
        for op in ops
    ]
    rules += _topic(OPS, REPLAYS_TOPIC, "Write", "Create", "Describe")
    # jakpreneur topics create aligns existing topics' retention (PDP: no longer than needed)
    rules += _topic(OPS, ANY, "DescribeConfigs", "AlterConfigs")
    return sorted(rules)


def replay_refusal(dlq: str, headers: Mapping[str, str]) -> str | None:
    """Why the dead letter on ``dlq`` may not be replayed, or None. Ops may write every
    topic and a consuming service may write its topics' DLQs, so a replay is checked as its
    topic's consumers would check it, lest a stolen service principal use ops to write where
    it may not: back to the topic of its own DLQ only, as that topic's event, from one of its
    producers, dead-lettered by one of its consuming services."""
    target = headers.get("dlq_original_topic", "")
    event = event_of_topic(target)
    if event is None or dlq != target + DLQ_SUFFIX:
        return f"{dlq} is not the DLQ of {target!r}"
    if headers.get("ce_type") != event.ce_type():
        return f"ce_type {headers.get('ce_type')!r} is not {event.name}'s"
    if headers.get("ce_source") not in event.producers:
        return f"ce_source {headers.get('ce_source')!r} does not produce {event.name}"
    if headers.get("dlq_failing_service") not in set(event.consumers) & set(SERVICES):
        return f"{headers.get('dlq_failing_service')!r} does not consume {event.name}"
    return None


def by_user(rules: Iterable[Acl]) -> dict[str, list[Acl]]:
    grouped: dict[str, list[Acl]] = {}
    for rule in rules:
        grouped.setdefault(rule.user, []).append(rule)
    return grouped


def strimzi_users(prefix: str = "", cluster: str = "jakpreneur") -> list[dict[str, Any]]:
    """The same rules as Strimzi ``KafkaUser`` resources (SCRAM-SHA-512, simple authz)."""
    users = []
    for user, rules in sorted(by_user([*acls(prefix), *cluster_rules()]).items()):
        grouped: dict[tuple[str, str], list[str]] = {}
        for rule in rules:
            grouped.setdefault((rule.resource, rule.name), []).append(rule.operation)
        users.append(
            {
                "apiVersion": "kafka.strimzi.io/v1",
                "kind": "KafkaUser",
                "metadata": {"name": user, "labels": {"strimzi.io/cluster": cluster}},
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {
                        "type": "simple",
                        "acls": [
                            {
                                "resource": {
                                    "type": resource,
                                    "name": name,
                                    "patternType": "literal",
                                },
                                "operations": sorted(ops),
                                "host": "*",
                            }
                            for (resource, name), ops in sorted(grouped.items())
                        ],
                    },
                },
            }
        )
    return users


# ---------------------------------------------------------------- granting them on a broker
# aiokafka has the CreateAcls and DescribeAcls requests but no admin method for them.

_RESOURCE = {"topic": 2, "group": 3}
_OPERATION = {
    "Read": 3,
    "Write": 4,
    "Create": 5,
    "Describe": 8,
    "DescribeConfigs": 10,
    "AlterConfigs": 11,
}
_LITERAL, _ALLOW, _ANY = 3, 3, 1


async def grant(admin: Any, rules: Iterable[Acl], timeout: float = 30) -> None:
    """Create ``rules`` with a started ``AIOKafkaAdminClient`` of a super user, and wait
    until the broker's authorizer applies them (it does so shortly after the controller
    has committed them)."""
    from aiokafka.protocol.admin import (
        CreateAclsRequest,
        CreateAclsRequest_v1,
        DescribeAclsRequest,
    )

    wanted = sorted(set(rules))
    if not wanted:
        return

    class CreateMany(CreateAclsRequest):  # type: ignore[misc]
        def build(self, request_struct_class: Any) -> Any:
            if request_struct_class is not CreateAclsRequest_v1:
                request_struct_class = CreateAclsRequest_v1
            return request_struct_class(
                [
                    (
                        _RESOURCE[r.resource],
                        r.name,
                        _LITERAL,
                        r.principal,
                        "*",
                        _OPERATION[r.operation],
                        _ALLOW,
                    )
                    for r in wanted
                ]
            )

    response = await admin._send_request(CreateMany(0, "", 0, "", "", 0, 0))
    errors = {msg or str(code) for code, msg in response.creation_responses if code}
    if errors:
        raise RuntimeError(f"CreateAcls refused: {sorted(errors)}")
    want = {(_RESOURCE[r.resource], r.name, r.principal, _OPERATION[r.operation]) for r in wanted}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin._send_request(
            DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY)
        )
        have = {
            (resource_type, name, principal, operation)
            for resource_type, name, _pattern, entries in described.resources
            for principal, _host, operation, _permission in entries
        }
        if want <= have:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{len(want - have)} ACLs not applied in {timeout}s")
        await asyncio.sleep(0.05)


async def grant_as(admin: KafkaAccess, rules: Iterable[Acl]) -> None:
    """:func:`grant` with a client of its own, logged in as ``admin`` (a super user)."""
    from aiokafka.admin import AIOKafkaAdminClient

    client = AIOKafkaAdminClient(**admin.client_kwargs())
    await client.start()
    try:
        await grant(client, rules)
    finally:
        await client.close()


def main() -> None:
    """Print the ``KafkaUser`` resources of a prefix (``python -m shared.access [prefix]``)."""
    prefix = sys.argv[1] if len(sys.argv) > 1 else ""
    json.dump(strimzi_users(prefix), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
