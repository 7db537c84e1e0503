import io
import json
import logging

from shared.logging import configure_logging, get_logger


def test_pii_is_masked_in_messages_values_exceptions_and_library_logs() -> None:
    stream = io.StringIO()
    configure_logging("test", "DEBUG", stream=stream, json=True)
    log = get_logger("t")
    log.info(
        "nik 3171054512000001 phone +62 812-3456-7890 mail siti@contoh.id",
        kk="3171000000000001",
        nested={"note": "call 081234567890", "count": 3},
        email="a@b.id",
    )
    try:
        raise ValueError("bad 6281234567890")
    except ValueError:
        log.exception("failed")
    logging.getLogger("some.library").warning("user 3171054512000001")
    text = stream.getvalue()
    for secret in (
        "3171054512000001",
        "3171000000000001",
        "812-3456-7890",
        "81234567890",
        "siti@contoh.id",
        "a@b.id",
    ):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["event"] == "nik [NIK/KK] phone [PHONE] mail [EMAIL]"
    assert lines[0]["nested"] == {"note": "call [PHONE]", "count": 3}
    assert lines[0]["kk"] == "[MASKED]"
    assert "[PHONE]" in lines[1]["exception"]
    assert lines[2]["event"] == "user [NIK/KK]" and lines[2]["logger"] == "some.library"
