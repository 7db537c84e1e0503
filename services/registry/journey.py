"""The participant journey read model: which stages of the 7P each participant reached and
when, built from every service's events; and the programme funnel over it. Pure."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

# Event name -> journey stage. The registry's own registration is the first stage.
STAGE_OF_EVENT: Mapping[str, str] = {
    "participant-registered": "registered",
    "training-enrolled": "training-enrolled",
    "training-completed": "training-completed",
    "training-not-completed": "training-not-completed",
    "mentoring-assigned": "mentoring-assigned",
    "mentoring-completed": "mentoring-completed",
    "product-certified": "product-certified",
    "product-curated": "product-curated",
    "product-listed": "product-listed",
    "export-facilitated": "export-facilitated",
    "financial-report-recorded": "sales-reported",
    "financing-referred": "financing-referred",
    "financing-approved": "financing-approved",
    "financing-declined": "financing-declined",
}
# The funnel: each stage's conversion is against the one before it.
FUNNEL: Sequence[str] = (
    "registered",
    "training-enrolled",
    "training-completed",
    "mentoring-assigned",
    "mentoring-completed",
    "product-certified",
    "product-curated",
    "product-listed",
    "sales-reported",
    "financing-referred",
    "financing-approved",
)
# Reached by some, but not steps of the funnel.
SIDE_STAGES: Sequence[str] = ("training-not-completed", "export-facilitated", "financing-declined")
FILTERS: Sequence[str] = ("city", "kecamatan", "sector", "has_business", "registered_month")
# The fields of a journey that an HTTP caller's scope holds a read to (shared.auth's
# aggregate filters): a kota officer's city, a pendamping's mentees.
SCOPE_FIELDS: Mapping[str, str] = {
    "city": "profile.city",
    "kecamatan": "profile.kecamatan",
    "pendamping_id": "mentor_id",  # recorded from mentoring-assigned (and -completed)
}


def funnel(journeys: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per stage, conversion from the previous stage, and the median days spent
    between each stage and the next, over the journeys given (already filtered)."""
    counts = dict.fromkeys((*FUNNEL, *SIDE_STAGES), 0)
    durations: dict[str, list[float]] = {stage: [] for stage in FUNNEL[:-1]}
    total = 0
    for journey in journeys:
        total += 1
        stages: Mapping[str, datetime] = journey.get("stages", {})
        for stage in counts:
            counts[stage] += stage in stages
        for here, after in itertools.pairwise(FUNNEL):
            if here in stages and after in stages:
                durations[here].append((stages[after] - stages[here]).total_seconds() / 86400)
    rows = []
    previous: int | None = None
    for stage in FUNNEL:
        count = counts[stage]
        conversion: float | None = None
        if previous is not None:
            conversion = count / previous if previous else 0.0
        median = statistics.median(durations[stage]) if durations.get(stage) else None
        rows.append(
            {
                "stage": stage,
                "count": count,
                "conversion": None if conversion is None else round(conversion, 4),
                "median_days_to_next": None if median is None else round(median, 2),
            }
        )
        previous = count
    return {
        "participants": total,
        "stages": rows,
        "side_stages": {stage: counts[stage] for stage in SIDE_STAGES},
    }


def parse_filters(
    query: Mapping[str, str], scope: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The funnel's query parameters as a MongoDB match on the journey's profile, held to
    the caller's ``scope`` (which shared.auth.narrow has checked the query against)."""
    match: dict[str, Any] = {}
    for name in FILTERS:
        value = query.get(name)
        if value in (None, ""):
            continue
        if name == "has_business":
            match["profile.has_business"] = value.lower() in ("1", "true", "yes", "ya")
        else:
            match[f"profile.{name}"] = value
    match.update({SCOPE_FIELDS[name]: value for name, value in (scope or {}).items()})
    return match
