"""The bearer token the tools read the services' HTTP endpoints with (shared.auth): the local
stack publishes an ops token as ``JAKPRENEUR_OPS_TOKEN`` in ``.run/stack.env``; against a
deployment, set ``JAKPRENEUR_OPS_TOKEN`` to a token of the province's issuer."""

from __future__ import annotations

import os
from collections.abc import Mapping

VARIABLE = "JAKPRENEUR_OPS_TOKEN"


def ops_token(env: Mapping[str, str] | None = None) -> str | None:
    """From ``env`` (a stack's own environment, e.g. a chaos run's) if it has one, else the
    process's environment, else the local stack's ``stack.env``."""
    from deploy.local.stack import stack_env

    for source in (env or {}, os.environ):
        if source.get(VARIABLE):
            return source[VARIABLE]
    return stack_env().get(VARIABLE)


def ops_headers(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``Authorization: Bearer ...`` of :func:`ops_token`; none when there is no token (the
    services then answer 401, which says what is missing)."""
    token = ops_token(env)
    return {"Authorization": f"Bearer {token}"} if token else {}
