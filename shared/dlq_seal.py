"""Personal fields in the dead-letter queues: encrypted, field by field.

A DLQ entry lives as long as its topic's records and an operator reads it: the personal
fields of a readable record (per the catalogue's ``pii`` marks) are encrypted one by one,
so that why it failed stays readable and nothing personal is in clear. ``jakpreneur dlq
show`` masks them, ``jakpreneur dlq replay`` opens them with the same key before it
republishes, so the replay is the original record.

A value that is not a JSON object cannot be split into fields. On a topic whose events
carry personal data it may still hold some in clear (a portal's broken JSON, a NIK in an
array), so it is encrypted whole: kept for an operator who holds the key, nothing in clear.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.contracts import event_of_topic, personal_fields

ENCRYPTED_FIELDS = "dlq_personal_encrypted"  # header: the fields encrypted, comma-separated
ENCRYPTED_VALUE = "dlq_value_encrypted"  # header: the whole value is one ciphertext
JSON_STYLE = "dlq_json_style"  # header: how the original was written (see _JSON_STYLES)
SEAL_HEADERS = (ENCRYPTED_FIELDS, ENCRYPTED_VALUE, JSON_STYLE)  # never a producer's own
MASK = "[encrypted]"
# How producers write JSON. A sealed value is written back in the style of its original, so
# the replay of a record written in one of these is byte for byte the original; any other
# (e.g. indented) comes back as the same JSON object, written compactly.
_JSON_STYLES: dict[str, dict[str, Any]] = {
    "compact": {"separators": (",", ":"), "ensure_ascii": False},  # pydantic's
    "compact-ascii": {"separators": (",", ":"), "ensure_ascii": True},
    "spaced-ascii": {"separators": (", ", ": "), "ensure_ascii": True},  # json.dumps's
    "spaced": {"separators": (", ", ": "), "ensure_ascii": False},
}

__all__ = ["MASK", "SEAL_HEADERS", "InvalidToken", "PersonalSeal", "masked"]


class PersonalSeal:
    """Encrypts a dead letter's personal fields under the ``DLQ_PERSONAL_KEY`` ring (Fernet
    keys, comma-separated, the current first) and opens them with any key of the ring."""

    def __init__(self, keys: str) -> None:
        self._ring = MultiFernet([Fernet(k.strip()) for k in keys.split(",") if k.strip()])

    def seal(self, topic: str, value: bytes) -> tuple[bytes, dict[str, str]]:
        """The value to dead-letter from ``topic`` (an event topic, under any prefix) and
        the headers that say what was encrypted (none: nothing was)."""
        event = event_of_topic(topic)
        fields = personal_fields(event) if event is not None else {}
        if not fields or not value:
            return value, {}
        try:
            raw = json.loads(value)
        except (ValueError, RecursionError):
            raw = None
        if not isinstance(raw, dict):
            return self._ring.encrypt(value), {ENCRYPTED_VALUE: "fernet"}
        try:
            style = next(
                (name for name, kw in _JSON_STYLES.items() if _dumps(raw, kw) == value),
                "compact",
            )
            sealed = [path for path in fields if _replace(raw, path.split("."), self._encrypt)]
            if not sealed:
                return value, {}
            return _dumps(raw, _JSON_STYLES[style]), {
                ENCRYPTED_FIELDS: ",".join(sealed),
                JSON_STYLE: style,
            }
        except (RecursionError, ValueError, TypeError):
            # parsed, but too deep to write again (json.dumps needs more stack than loads):
            # the whole value, encrypted, rather than no dead letter at all
            return self._ring.encrypt(value), {ENCRYPTED_VALUE: "fernet"}

    def open(self, value: bytes, headers: Mapping[str, str]) -> bytes:
        """The original value of a dead letter; :class:`InvalidToken` when no key of the
        ring opens it (or the value is not what its headers say)."""
        if headers.get(ENCRYPTED_VALUE):
            return self._ring.decrypt(value)
        paths = _paths(headers)
        if not paths:
            return value
        try:
            raw = json.loads(value)
        except (ValueError, RecursionError):
            raise InvalidToken from None
        for path in paths:
            _replace(raw, path.split("."), self._decrypt)
        return _dumps(raw, _JSON_STYLES.get(headers.get(JSON_STYLE, ""), _JSON_STYLES["compact"]))

    def _encrypt(self, value: Any) -> str:
        return self._ring.encrypt(json.dumps(value).encode()).decode()

    def _decrypt(self, token: Any) -> Any:
        if not isinstance(token, str):
            raise InvalidToken
        return json.loads(self._ring.decrypt(token.encode()))


def masked(value: bytes, headers: Mapping[str, str]) -> str:
    """A dead letter's value for eyes, without a key: each encrypted field (or the whole
    value) shown as ``[encrypted]``."""
    if headers.get(ENCRYPTED_VALUE):
        return MASK
    paths = _paths(headers)
    if not paths:
        return value.decode("utf-8", "replace")
    try:
        raw = json.loads(value)
    except (ValueError, RecursionError):
        return MASK  # not what its headers say: show nothing of it
    for path in paths:
        _replace(raw, path.split("."), lambda _: MASK)
    return json.dumps(raw, ensure_ascii=False)


def _paths(headers: Mapping[str, str]) -> list[str]:
    return [p for p in headers.get(ENCRYPTED_FIELDS, "").split(",") if p]


def _dumps(raw: Any, style: dict[str, Any]) -> bytes:
    return json.dumps(raw, **style).encode()


def _replace(node: Any, path: list[str], change: Callable[[Any], Any]) -> bool:
    """Apply ``change`` to the non-null values at ``path`` (through nested objects and lists
    of them); whether there was any."""
    if isinstance(node, list):
        return any([_replace(item, path, change) for item in node])
    if not isinstance(node, dict) or node.get(path[0]) is None:
        return False
    if len(path) > 1:
        return _replace(node[path[0]], path[1:], change)
    node[path[0]] = change(node[path[0]])
    return True
