"""The catalogue: every event in one tuple, in the order the schema snapshots and the
AsyncAPI document are written, and the questions asked of it (who produces, who consumes,
which event a topic carries, which fields are personal). Its order is published: append."""

from __future__ import annotations

from pydantic import BaseModel

from shared.contracts.base import Event, Part
from shared.contracts.coaching import (
    CertificationExpiring,
    MentoringAssigned,
    MentoringCompleted,
    ProductCertificatesChanged,
    ProductCertificationLapsed,
    ProductCertified,
    TrainingCompleted,
    TrainingEnrolled,
    TrainingNotCompleted,
)
from shared.contracts.inbound import (
    CertificationIssued,
    CertificationRevoked,
    CurationReviewed,
    FinancingDecided,
    MentoringSessionRecorded,
    ProductSubmitted,
    RegistrationSubmitted,
    SalesReported,
    TrainingAssessed,
    TrainingAttendanceRecorded,
)
from shared.contracts.marketplace import (
    BusinessClassChanged,
    ExportFacilitated,
    FinancialReportRecorded,
    FinancingApproved,
    FinancingDeclined,
    FinancingReferred,
    ProductCurated,
    ProductCurationRejected,
    ProductDelisted,
    ProductListed,
)
from shared.contracts.notifications import NotificationFailed, NotificationSent
from shared.contracts.pdp import (
    ConsentWithdrawn,
    ParticipantDataErased,
    ParticipantErasureRequested,
)
from shared.contracts.registry import (
    ParticipantContact,
    ParticipantRegistered,
    RegistrationRejected,
)

CATALOGUE: tuple[type[Event], ...] = (
    RegistrationSubmitted,
    ParticipantRegistered,
    ParticipantContact,
    RegistrationRejected,
    TrainingAttendanceRecorded,
    TrainingAssessed,
    MentoringSessionRecorded,
    ProductSubmitted,
    CertificationIssued,
    CertificationRevoked,
    TrainingEnrolled,
    TrainingCompleted,
    TrainingNotCompleted,
    MentoringAssigned,
    MentoringCompleted,
    ProductCertified,
    ProductCertificationLapsed,
    ProductCertificatesChanged,
    CertificationExpiring,
    CurationReviewed,
    SalesReported,
    FinancingDecided,
    ProductCurationRejected,
    ProductCurated,
    ProductListed,
    ProductDelisted,
    ExportFacilitated,
    FinancialReportRecorded,
    BusinessClassChanged,
    FinancingReferred,
    FinancingApproved,
    FinancingDeclined,
    NotificationSent,
    NotificationFailed,
    ParticipantErasureRequested,
    ParticipantDataErased,
    ConsentWithdrawn,
)


def personal_fields(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Each personal field of ``model`` (nested ones as ``a.b``) and its category."""
    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and "pii" in extra:
            found[prefix + (info.alias or name)] = str(extra["pii"])
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, Part):
                found |= personal_fields(arg, f"{prefix}{info.alias or name}.")
    return found


def produced_by(principal: str) -> tuple[type[Event], ...]:
    """The events ``principal`` (a service or an internal system) writes, in catalogue order."""
    return tuple(event for event in CATALOGUE if principal in event.producers)


def event_of_topic(topic: str) -> type[Event] | None:
    """The event published on ``topic`` (a name under any prefix), or None."""
    matches = [e for e in CATALOGUE if topic.endswith(e.name)]
    return max(matches, key=lambda e: len(e.name), default=None)


def consumed_by(principal: str) -> tuple[type[Event], ...]:
    """The events ``principal`` reads, in catalogue order."""
    return tuple(event for event in CATALOGUE if principal in event.consumers)
