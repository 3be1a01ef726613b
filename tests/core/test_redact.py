"""Redaction of secrets in free text."""

import pytest

from core.redact import MASK, redact


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
        ("authorization=Bot MTIzNDU2Nzg5.abc.def", "MTIzNDU2Nzg5.abc.def"),
        ("db password=hunter2hunter2 ok", "hunter2hunter2"),
        ('{"api_key": "k-123456789"}', "k-123456789"),
        ("DB_PASSWORD: s3cr3t!", "s3cr3t!"),
        ("postgresql://app:pa55word@db:5432/x", "pa55word"),
        ("key sk-ant-api03-AAAAAAAAAAAAAAAA used", "sk-ant-api03-AAAAAAAAAAAAAAAA"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijklmnopqrstuvwxyz0123"),
        ("AKIAABCDEFGHIJKLMNOP in env", "AKIAABCDEFGHIJKLMNOP"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
            "MIIE",
        ),
        ("jwt eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKKF2QT4", "SflKxwRJSMeKKF2QT4"),
    ],
)
def test_patterns_mask_secrets(text: str, leak: str) -> None:
    out = redact(text)
    assert leak not in out
    assert MASK in out


def test_known_values_are_masked_anywhere() -> None:
    out = redact("the value zq9-plant-ed appears inline:zq9-plant-ed", secrets=["zq9-plant-ed"])
    assert "zq9-plant-ed" not in out
    assert out.count(MASK) == 2


def test_plain_text_is_kept() -> None:
    line = "nginx.service: Failed with result 'exit-code'. token bucket empty"
    assert redact(line) == line
