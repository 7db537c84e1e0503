"""One realistic example of every event, for the AsyncAPI documents (``shared/asyncapi.py``).

Keyed by event name (or by ``ce_type``, where two major versions share a topic for a
while), beside the catalogue rather than in it, so that the contracts stay a list of
fields. Every example is a payload as it travels (JSON), and it must pass its own contract:
``tests/docs/test_asyncapi.py`` validates each one and fails when an event of the catalogue
has none.

The people are made up. Siti Contoh ("contoh": example) runs a kuliner business in Tebet,
Jakarta Selatan; her NIK and KK are shaped like real ones (3174 = Jakarta Selatan, a woman
born 12 August 1990) but their serials (9999) are made up, as are the numbers of her
certificates (runs of zeros), her phone (0812-0000-...) and her e-mail (example.com).
"""

from __future__ import annotations

from typing import Any

PARTICIPANT = "3f6c1a52-8d7e-4b0a-9c21-5e8f7a6b4d10"
SUBMISSION = "8b0f2d4e-1c3a-4e5f-9a7b-6d8c0e2f4a61"
PRODUCT = "prod-keripik-tempe-0001"
COHORT = "kohort-kuliner-tebet-2024-05"
MENTOR = "pendamping-tebet-07"
REFERRAL = "ref-dki-2024-000123"
CERTIFICATE = "halal-contoh-0001"

EXAMPLES: dict[str, dict[str, Any]] = {
    "registration-submitted": {
        "submission_id": SUBMISSION,
        "nik": "3174015208909999",
        "kk": "3174010101099999",
        "full_name": "Siti Contoh",
        "birth_date": "1990-08-12",
        "gender": "P",
        "phone": "081200001234",
        "email": "siti.contoh@example.com",
        "city": "Jakarta Selatan",
        "kecamatan": "Tebet",
        "kelurahan": "Tebet Barat",
        "sector": "kuliner",
        "has_business": True,
        "business_name": "Dapur Contoh Tebet",
        "nib": "9120000000001",
        "consent": True,
        "channel": "jaki",
    },
    "participant-registered": {
        "participant_id": PARTICIPANT,
        "submission_id": SUBMISSION,
        "registered_at": "2024-05-01T02:30:05Z",
        "city": "Jakarta Selatan",
        "kecamatan": "Tebet",
        "sector": "kuliner",
        "has_business": True,
        "gender": "P",
        "birth_year": 1990,
    },
    "participant-contact": {
        "participant_id": PARTICIPANT,
        "display_name": "Siti",
        "phone": "+6281200001234",
        "email": "siti.contoh@example.com",
        "updated_at": "2024-05-01T02:30:05Z",
    },
    "registration-rejected": {
        "submission_id": "c2d4e6f8-0a1b-4c3d-8e5f-7a9b1c3d5e70",
        "rejected_at": "2024-05-01T02:31:10Z",
        "reasons": [
            {
                "code": "nik-birthdate-mismatch",
                "field": "birth_date",
                "message": "NIK digits 7-12 do not match the birth date.",
            }
        ],
        "participant_id": None,
    },
    "training-attendance-recorded": {
        "participant_id": PARTICIPANT,
        "cohort_id": COHORT,
        "session_no": 1,
        "present": True,
        "recorded_at": "2024-05-06T03:00:00Z",
        "trainer_id": "pelatih-kuliner-03",
    },
    "training-assessed": {
        "participant_id": PARTICIPANT,
        "cohort_id": COHORT,
        "score": 86,
        "assessed_at": "2024-05-17T06:00:00Z",
    },
    "mentoring-session-recorded": {
        "participant_id": PARTICIPANT,
        "mentor_id": MENTOR,
        "session_at": "2024-05-24T03:00:00Z",
        "notes": "Membahas kemasan dan label komposisi untuk pengajuan P-IRT.",
    },
    "product-submitted": {
        "product_id": PRODUCT,
        "participant_id": PARTICIPANT,
        "name": "Keripik Tempe Contoh",
        "category": "makanan-minuman",
        "description": "Keripik tempe renyah rasa daun jeruk, kemasan 150 g.",
        "production_started": "2023-06",
    },
    "certification-issued": {
        "certificate_id": CERTIFICATE,
        "participant_id": PARTICIPANT,
        "product_id": PRODUCT,
        "kind": "HALAL",
        "number": "ID31110000000000524",
        "issued_at": "2024-06-10T01:00:00Z",
        "expires_at": "2028-06-10T01:00:00Z",
        "issuer": "BPJPH",
    },
    "certification-revoked": {
        "certificate_id": "pirt-contoh-0001",
        "reason": "recall",
        "revoked_at": "2024-09-02T04:00:00Z",
    },
    "training-enrolled": {
        "participant_id": PARTICIPANT,
        "cohort_id": COHORT,
        "sector": "kuliner",
        "city": "Jakarta Selatan",
        "session_count": 4,
    },
    "training-completed": {
        "participant_id": PARTICIPANT,
        "cohort_id": COHORT,
        "score": 86,
        "attendance_rate": 1.0,
    },
    "training-not-completed": {
        "participant_id": "5a7c9e1b-3d5f-4a8c-b0e2-4f6a8c0e2b93",
        "cohort_id": COHORT,
        "score": 55,
        "attendance_rate": 0.5,
        "reasons": [
            {
                "code": "attendance-below-75",
                "message": "attended 50% of sessions; at least 75% is required",
            },
            {"code": "score-below-70", "message": "post-test score 55; at least 70 is required"},
        ],
    },
    "mentoring-assigned": {
        "participant_id": PARTICIPANT,
        "mentor_id": MENTOR,
        "centre": "PLUT Tebet",
    },
    "mentoring-completed": {
        "participant_id": PARTICIPANT,
        "mentor_id": MENTOR,
        "sessions": 3,
    },
    "product-certified": {
        "product_id": PRODUCT,
        "participant_id": PARTICIPANT,
        "category": "makanan-minuman",
        "certificates": [
            {
                "certificate_id": "nib-contoh-0001",
                "kind": "NIB",
                "number": "9120000000001",
                "expires_at": None,
            },
            {
                "certificate_id": "pirt-contoh-0001",
                "kind": "PIRT",
                "number": "2063174010000-29",
                "expires_at": "2029-06-01T00:00:00Z",
            },
            {
                "certificate_id": CERTIFICATE,
                "kind": "HALAL",
                "number": "ID31110000000000524",
                "expires_at": "2028-06-10T01:00:00Z",
            },
        ],
        "valid_until": "2028-06-10T01:00:00Z",
        "valid_kinds": ["HALAL", "NIB", "PIRT"],
        "validity_revision": 3,
    },
    "product-certification-lapsed": {
        "product_id": PRODUCT,
        "participant_id": PARTICIPANT,
        "category": "makanan-minuman",
        "reasons": [
            {
                "code": "requirement-unmet",
                "message": "no valid PIRT certificate (revoked, expired or missing)",
            }
        ],
        "valid_kinds": ["HALAL", "NIB"],
        "validity_revision": 4,
    },
    "product-certificates-changed": {
        "product_id": PRODUCT,
        "participant_id": PARTICIPANT,
        "category": "makanan-minuman",
        "valid_kinds": ["HALAL", "HKI_MEREK", "NIB", "PIRT"],
        "validity_revision": 4,
    },
    "certification-expiring": {
        "certificate_id": CERTIFICATE,
        "participant_id": PARTICIPANT,
        "product_id": PRODUCT,
        "kind": "HALAL",
        "number": "ID31110000000000524",
        "expires_at": "2028-06-10T01:00:00Z",
    },
    "curation-reviewed": {
        "product_id": PRODUCT,
        "level": "curator",
        "decision": "approve",
        "grade": "A",
        "reviewer_id": "kurator-dinas-02",
        "notes": "Rasa konsisten, kemasan layak ritel modern.",
        "reviewed_at": "2024-07-01T07:00:00Z",
    },
    "sales-reported": {
        "participant_id": PARTICIPANT,
        "period": "2024-07",
        "revenue_idr": 18_500_000,
        "transactions": 412,
        "channel": "qris",
        "source_ref": "qris-2024-07-000123",
    },
    "financing-decided": {
        "referral_id": REFERRAL,
        "decision": "approved",
        "amount_idr": 25_000_000,
        "decided_at": "2024-10-15T03:00:00Z",
        "bank_ref": "DKI-KUR-2024-000001",
    },
    "product-curation-rejected": {
        "product_id": "prod-sambal-0002",
        "participant_id": PARTICIPANT,
        "level": "kecamatan",
        "notes": "Label belum mencantumkan tanggal kedaluwarsa.",
    },
    "product-curated": {"product_id": PRODUCT, "participant_id": PARTICIPANT, "grade": "A"},
    "product-listed": {
        "product_id": PRODUCT,
        "participant_id": PARTICIPANT,
        "grade": "A",
        "channels": ["e-order", "retail", "online"],
    },
    "product-delisted": {
        "product_id": PRODUCT,
        "participant_id": PARTICIPANT,
        "reason": "certification-lapsed",
    },
    "export-facilitated": {
        "product_id": PRODUCT,
        "participant_id": PARTICIPANT,
        "programme": "Jakpreneur Go-International",
        "reasons": [
            {"code": "grade-a-listed", "message": "listed with curation grade A"},
            {"code": "sales-3-of-6-months", "message": "sales reported in 4 of the last 6 months"},
            {"code": "certificates", "message": "HALAL and PIRT valid"},
        ],
    },
    "financial-report-recorded": {
        "participant_id": PARTICIPANT,
        "period": "2024-07",
        "revenue_idr": 18_500_000,
        "transactions": 412,
        "channel": "qris",
        "replaced": False,
    },
    "business-class-changed": {
        "participant_id": PARTICIPANT,
        "from_class": None,
        "to_class": "mikro",
        "annual_sales_idr": 222_000_000,
        "basis_months": 3,
        "annualised": True,
        "assessed_at": "2024-08-01T02:00:00Z",
    },
    "financing-referred": {
        "referral_id": REFERRAL,
        "participant_id": PARTICIPANT,
        "stages": [
            "registered",
            "training-completed",
            "mentoring-completed",
            "product-certified",
            "product-listed",
            "sales-reported-3-months",
        ],
        "product_name": "Kredit Usaha Mikro Bank DKI",
        "max_amount_idr": 50_000_000,
        "rate_percent": 6.0,
    },
    "financing-approved": {
        "referral_id": REFERRAL,
        "participant_id": PARTICIPANT,
        "amount_idr": 25_000_000,
        "bank_ref": "DKI-KUR-2024-000001",
    },
    "financing-declined": {
        "referral_id": "ref-dki-2024-000124",
        "participant_id": "5a7c9e1b-3d5f-4a8c-b0e2-4f6a8c0e2b93",
        "bank_ref": "DKI-KUR-2024-000002",
    },
    "notification-sent": {
        "participant_id": PARTICIPANT,
        "channel": "whatsapp",
        "template": "training-enrolled",
        "provider_message_id": "wamid.contoh000000000001",
        "cause_event_id": "0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70",
    },
    "notification-failed": {
        "participant_id": PARTICIPANT,
        "template": "training-enrolled",
        "cause_event_id": "0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70",
        "reasons": [
            {
                "code": "provider-rejected",
                "channel": "whatsapp",
                "message": "Nomor tidak terdaftar di WhatsApp.",
            },
            {"code": "provider-unavailable", "channel": "sms", "message": "HTTP 503."},
        ],
    },
    "participant-erasure-requested": {
        "participant_id": PARTICIPANT,
        "requested_by": "participant",
        "reason": "Tidak lagi mengikuti program.",
        "requested_at": "2025-01-06T02:00:00Z",
    },
    "participant-data-erased": {
        "participant_id": PARTICIPANT,
        "service": "coaching",
        "erased_at": "2025-01-06T02:00:03Z",
        "categories": ["business-id", "free-text"],
    },
    "consent-withdrawn": {
        "participant_id": PARTICIPANT,
        "requested_by": "participant",
        "withdrawn_at": "2024-12-20T09:15:00Z",
    },
}

# When each example happened, in Siti's story (UTC): the example records' ce_businesstime,
# their ce_time a few seconds later. An event missing here happened on 1 May 2024.
WHEN: dict[str, str] = {
    "registration-submitted": "2024-05-01T02:30:00Z",
    "participant-registered": "2024-05-01T02:30:05Z",
    "participant-contact": "2024-05-01T02:30:05Z",
    "registration-rejected": "2024-05-01T02:31:10Z",
    "training-enrolled": "2024-05-01T02:30:06Z",
    "training-attendance-recorded": "2024-05-06T03:00:00Z",
    "training-assessed": "2024-05-17T06:00:00Z",
    "training-completed": "2024-05-17T06:00:02Z",
    "training-not-completed": "2024-05-17T06:00:02Z",
    "mentoring-assigned": "2024-05-17T06:00:02Z",
    "mentoring-session-recorded": "2024-05-24T03:00:00Z",
    "mentoring-completed": "2024-06-07T03:00:01Z",
    "product-submitted": "2024-06-01T02:00:00Z",
    "certification-issued": "2024-06-10T01:00:00Z",
    "product-certified": "2024-06-10T01:00:01Z",
    "product-certificates-changed": "2024-08-20T01:00:01Z",
    "certification-revoked": "2024-09-02T04:00:00Z",
    "product-certification-lapsed": "2024-09-02T04:00:01Z",
    "certification-expiring": "2028-05-11T01:00:00Z",
    "curation-reviewed": "2024-07-01T07:00:00Z",
    "product-curation-rejected": "2024-07-01T07:00:01Z",
    "product-curated": "2024-07-01T07:00:01Z",
    "product-listed": "2024-07-01T07:00:01Z",
    "product-delisted": "2024-09-02T04:00:02Z",
    "sales-reported": "2024-08-01T01:00:00Z",
    "financial-report-recorded": "2024-08-01T01:00:01Z",
    "business-class-changed": "2024-08-01T01:00:01Z",
    "export-facilitated": "2024-10-01T01:00:01Z",
    "financing-referred": "2024-10-01T01:00:01Z",
    "financing-decided": "2024-10-15T03:00:00Z",
    "financing-approved": "2024-10-15T03:00:01Z",
    "financing-declined": "2024-10-15T03:00:01Z",
    "notification-sent": "2024-05-01T02:30:09Z",
    "notification-failed": "2024-05-01T02:35:00Z",
    "consent-withdrawn": "2024-12-20T09:15:00Z",
    "participant-erasure-requested": "2025-01-06T02:00:00Z",
    "participant-data-erased": "2025-01-06T02:00:03Z",
}
