"""The contracts: one pydantic model per event type, every field described.

Consumers read tolerantly (unknown fields are ignored). A breaking change is a new type with a
higher major version; ``tests/shared/test_contracts.py`` compares each model with its
checked-in JSON-Schema snapshot under ``shared/schemas`` and fails on an incompatible change.
Run ``python -m shared.contracts`` to write the snapshots after a compatible change.

One module per room, and this door re-exports each public name (``from shared.contracts
import X``):

- ``base``: ``Part``, ``Event``, ``ParticipantEvent``, ``Refusal``, the bounded types, the
  limits, ``pii``;
- ``inbound``: what the internal systems send (portal, LMS, pendamping app, issuers,
  curators, QRIS/e-Order, Bank DKI);
- ``registry``, ``coaching``, ``marketplace``, ``notifications``: what each service writes;
- ``pdp``: the data subject's requests (erasure, consent) and every service's answers;
- ``catalogue``: every event in published order, and who produces and consumes each;
- ``compat``: the schema snapshots and the compatibility checker (tooling).
"""

from shared.contracts.base import (
    EARLIEST,
    LATEST,
    MAX_COUNT,
    MAX_ITEMS,
    MAX_RECORD_BYTES,
    MAX_RUPIAH,
    MAX_SESSIONS,
    PII_CATEGORIES,
    Digits,
    Email,
    Event,
    Finding,
    Id,
    Instant,
    Month,
    Name,
    Part,
    ParticipantEvent,
    Phone,
    Refusal,
    Text,
    in_bounds,
    is_plain,
    pii,
)
from shared.contracts.catalogue import (
    CATALOGUE,
    consumed_by,
    event_of_topic,
    personal_fields,
    produced_by,
)
from shared.contracts.coaching import (
    VALID_KINDS,
    VALIDITY_REVISION,
    CertificateRef,
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
from shared.contracts.compat import SCHEMA_DIR, incompatibilities, write_snapshots
from shared.contracts.inbound import (
    CertificateKind,
    CertificationIssued,
    CertificationRevoked,
    CurationLevel,
    CurationReviewed,
    FinancingDecided,
    MentoringSessionRecorded,
    ProductCategory,
    ProductSubmitted,
    RegistrationSubmitted,
    SalesReported,
    TrainingAssessed,
    TrainingAttendanceRecorded,
)
from shared.contracts.marketplace import (
    BusinessClass,
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
from shared.contracts.notifications import DeliveryProblem, NotificationFailed, NotificationSent
from shared.contracts.pdp import (
    ConsentWithdrawn,
    ParticipantDataErased,
    ParticipantErasureRequested,
)
from shared.contracts.registry import (
    ParticipantContact,
    ParticipantRegistered,
    Reason,
    RegistrationRejected,
)

__all__ = [
    "CATALOGUE",
    "EARLIEST",
    "LATEST",
    "MAX_COUNT",
    "MAX_ITEMS",
    "MAX_RECORD_BYTES",
    "MAX_RUPIAH",
    "MAX_SESSIONS",
    "PII_CATEGORIES",
    "SCHEMA_DIR",
    "VALIDITY_REVISION",
    "VALID_KINDS",
    "BusinessClass",
    "BusinessClassChanged",
    "CertificateKind",
    "CertificateRef",
    "CertificationExpiring",
    "CertificationIssued",
    "CertificationRevoked",
    "ConsentWithdrawn",
    "CurationLevel",
    "CurationReviewed",
    "DeliveryProblem",
    "Digits",
    "Email",
    "Event",
    "ExportFacilitated",
    "FinancialReportRecorded",
    "FinancingApproved",
    "FinancingDecided",
    "FinancingDeclined",
    "FinancingReferred",
    "Finding",
    "Id",
    "Instant",
    "MentoringAssigned",
    "MentoringCompleted",
    "MentoringSessionRecorded",
    "Month",
    "Name",
    "NotificationFailed",
    "NotificationSent",
    "Part",
    "ParticipantContact",
    "ParticipantDataErased",
    "ParticipantErasureRequested",
    "ParticipantEvent",
    "ParticipantRegistered",
    "Phone",
    "ProductCategory",
    "ProductCertificatesChanged",
    "ProductCertificationLapsed",
    "ProductCertified",
    "ProductCurated",
    "ProductCurationRejected",
    "ProductDelisted",
    "ProductListed",
    "ProductSubmitted",
    "Reason",
    "Refusal",
    "RegistrationRejected",
    "RegistrationSubmitted",
    "SalesReported",
    "Text",
    "TrainingAssessed",
    "TrainingAttendanceRecorded",
    "TrainingCompleted",
    "TrainingEnrolled",
    "TrainingNotCompleted",
    "consumed_by",
    "event_of_topic",
    "in_bounds",
    "incompatibilities",
    "is_plain",
    "personal_fields",
    "pii",
    "produced_by",
    "write_snapshots",
]
