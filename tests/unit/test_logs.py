"""Log lines: JSON shape, ids, and masking of whatever a message carries."""

from __future__ import annotations

import io
import json
import logging

from gateway.logs import REQUEST_ID, JsonFormatter, MaskingFilter, TextFormatter


def emit(formatter: logging.Formatter, msg: str, *args: object, **extra: object) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(formatter)
    log = logging.Logger("t")
    log.addHandler(handler)
    log.warning(msg, *args, extra=extra)
    return out.getvalue().strip()


def test_json_lines_carry_the_ids_and_mask_numbers_and_emails() -> None:
    token = REQUEST_ID.set("req-1")
    try:
        line = emit(
            JsonFormatter(),
            "member %s wrote from %s",
            "+86 138-1234-5678",
            "lina@example.com",
            notification_id="ntf_1",
        )
    finally:
        REQUEST_ID.reset(token)
    body = json.loads(line)
    assert body["msg"] == "member 138****5678 wrote from l***@example.com"
    assert body["request_id"] == "req-1" and body["notification_id"] == "ntf_1"
    assert body["level"] == "warning" and body["logger"] == "t" and body["ts"].endswith("Z")


def test_text_lines_mask_too_and_name_the_ids() -> None:
    line = emit(TextFormatter(), "reply 13812345678", notification_id="ntf_2")
    assert "13812345678" not in line and "138****5678" in line and line.endswith("notification_id=ntf_2")
