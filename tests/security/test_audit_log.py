"""The audit log: one key=value line per event, safe against injected text."""

from __future__ import annotations

import logging

from tailrace.broker.security import audit


def test_auth_failure_line(caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    audit.auth_failure("external", "10.0.0.7:51234", "SCRAM-SHA-256", "alice", "invalid proof")
    (record,) = caplog.records
    assert record.name == "tailrace.audit"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "event=auth_failure listener=external peer=10.0.0.7:51234 mechanism=SCRAM-SHA-256"
        ' username=alice reason="invalid proof"'
    )


def test_authz_denied_line(caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    audit.authz_denied("User:bob", "write", "topic", "orders", "10.0.0.8:40022")
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "event=authz_denied principal=User:bob operation=write resource_type=topic"
        " name=orders peer=10.0.0.8:40022"
    )


def test_hostile_values_cannot_forge_lines_or_fields(caplog):
    caplog.set_level(logging.INFO, logger="tailrace.audit")
    audit.auth_failure("l", "p", None, 'x\nevent=auth_success username=admin "', "r" * 1000)
    message = caplog.records[0].getMessage()
    assert "\n" not in message
    assert "mechanism=- " in message
    assert 'username="x\\nevent=auth_success username=admin \\""' in message
    assert message.endswith(" reason=" + "r" * audit.MAX_VALUE_CHARS + "...")
    assert len(message) < 400
