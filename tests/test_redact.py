"""Secret detection and redaction: names, values, URLs, free text, extra patterns."""

from __future__ import annotations

import re

import pytest

from reprokit.capturing import redact
from reprokit.capturing.redact import (
    REDACTED,
    looks_secret_name,
    looks_secret_value,
    redact_text,
    redact_url,
)
from reprokit.exceptions import UsageError

# Canary credentials in the formats of the real ones (none of them is valid anywhere).
CANARIES = {
    "aws_key_id": "AKIACANARY0123456789",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARY1KEY",
    "github": "ghp_CANARY0123456789abcdefghijABCDEFGHIJ",
    "github_pat": "github_pat_11CANARY0_abcdefghijklmnopqrstuvwxyz0123456789",
    "gitlab": "glpat-CANARY0123456789abcd",
    "slack": "xoxb-123456789012-CANARY0123",
    "huggingface": "hf_CANARYabcdefghijklmnopqrstuvwxyzAB",
    "openai": "sk-proj-CANARY0123456789abcdefghij",
    "google": "AIzaSyCANARY0123456789abcdefghijklmnop",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQU5BUlkifQ.c2lnbmF0dXJlQ0FOQVJZ",
    "high_entropy": "Kx9fQ2mZ7pL4vR8tN3wY6hB1cJ5dG0sAqECANARY",
    # webhook URLs: the path is the credential, and it is too short or plain for the
    # entropy rule
    "slack_webhook": "https://hooks.slack.com/services/T01CANARY/B02CANARY/abcdefCANARYxyz012345678",
    "slack_workflow": "https://hooks.slack.com/workflows/T01CANARY/A02CANARY/1234/CANARYabc",
    "discord_webhook": "https://discord.com/api/webhooks/1234567890/CANARY_abcdefghijklmnop-qrs",
    "teams_webhook": (
        "https://acme.webhook.office.com/webhookb2/1b2c3d4e-CANARY@5f6a/IncomingWebhook/"
        "0123456789abcdefCANARY/9e8d"
    ),
    "office_webhook": "https://outlook.office.com/webhook/abc-CANARY@def/IncomingWebhook/0f1e",
}

HARMLESS = [
    "4",
    ":4096:8",
    "0,1",
    "GPU-5f2c9e1a-7b3d-4e8f-9a6b-1c2d3e4f5a6b",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",  # a git commit: hex, one letter case
    "123e4567-e89b-12d3-a456-426614174000",
    "--xla_gpu_deterministic_ops=true --xla_cpu_enable_fast_math=false",
    "/home/Alice/Projects/MyThesis/Chapter2Data/run_2024_final",
    "test_capture_snapshot_round_trips_exactly_2024",
    "max_split_size_mb:128,expandable_segments:True",
    "https://github.com/org/repo.git",
    "https://api.slack.com/messaging/webhooks",
    "https://discord.com/developers/docs/resources/webhook",
]


@pytest.mark.parametrize("kind", sorted(CANARIES))
def test_credential_formats_are_recognised_and_replaced(kind: str) -> None:
    secret = CANARIES[kind]
    assert looks_secret_value(secret)
    text = f"error while talking to the server with {secret} (retrying)"
    redacted = redact_text(text)
    assert secret not in redacted
    assert "CANARY" not in redacted
    assert redacted.startswith("error while talking to the server with ")
    assert REDACTED in redacted


@pytest.mark.parametrize("value", HARMLESS)
def test_ordinary_values_are_left_alone(value: str) -> None:
    assert not looks_secret_value(value)
    assert redact_text(value) == value


def test_pem_private_key_block_is_removed_entirely() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowCANARYbody\nabc\n-----END RSA PRIVATE KEY-----"
    out = redact_text(f"key:\n{pem}\nafter")
    assert "CANARY" not in out and "MIIE" not in out
    assert out.endswith("\nafter")
    truncated = redact_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaCANARY")
    assert "CANARY" not in truncated


def test_key_value_pairs_keep_the_key_and_lose_the_value() -> None:
    assert redact_text("password=hunter2 user=bob") == f"password={REDACTED} user=bob"
    assert redact_text('{"api_key": "CANARYabc"}') == f'{{"api_key": "{REDACTED}"}}'
    assert redact_text("Authorization: Bearer CANARYabcdefghijklmno") == (
        f"Authorization: Bearer {REDACTED}"
    )
    conn = "AccountName=acct;AccountKey=CANARY==;EndpointSuffix=core.windows.net"
    assert (
        redact_text(conn)
        == f"AccountName=acct;AccountKey={REDACTED};EndpointSuffix=core.windows.net"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:CANARYTOKEN@example.com/r.git", "https://example.com/r.git"),
        ("postgresql://u:CANARYPW@h:5432/db", "postgresql://h:5432/db"),
        (
            "https://ghp_CANARY0123456789abcdefghijABCDEFGHIJ@github.com/o/r",
            "https://github.com/o/r",
        ),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
        ("https://h/p?x=1&y=2", "https://h/p?x=1&y=2"),
        ("https://h/p?token=CANARY&x=1", f"https://h/p?token={REDACTED}&x=1"),
        (
            "s3://b/k?X-Amz-Signature=CANARY&X-Amz-Date=1",
            f"s3://b/k?X-Amz-Signature={REDACTED}&X-Amz-Date=1",
        ),
    ],
)
def test_redact_url_strips_credentials(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_url_credentials_inside_text_are_replaced() -> None:
    out = redact_text("could not connect to postgresql://admin:CANARYPW@db:5432/x")
    assert out == f"could not connect to postgresql://{REDACTED}@db:5432/x"


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "MYSQL_PASSWD",
        "api_key",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "HTTP_AUTHORIZATION",
        "SSH_PRIVATE_KEY",
        "SESSION_ID",
        "COOKIE_JAR",
        "GH_PAT",
        "DB_PWD",
        "password",
        "token",
        "access_token",
        "auth_token",
        "api_token",
        "hf_token",
        "github_token",
        "HFToken",
        "hftoken",
        "apiKey",
        "APIKEY",
        "OPENAI_API_KEY",
        "OPENAI_KEY",  # a vendor's key: the common case, not a key of data
        # what the word rules let through and the substring backstop catches (a review)
        "passPhrase",
        "keypass",
        "privkey",
        "pkey",
        "private_pem",
        "oauthkey",
        "wandbkey",
        "xauth",
        "cookiejar",
        "KEYS_JSON",
        "tokens",
        "hf_tokens",
        "api_key_encrypted",
        "api_key_eu",
        "openai_key_eu",
        "key_prod_eu",
        "private",
        "stripeKey",
        "HF_KEYS",
        "KEY",
        "secret_key",
        "key",
        "BASIC_AUTH",
        "auth_header",
        "X-Amz-Signature",
        "AZURE_STORAGE_CONNECTION_STRING",
        "client_secret",
        "SENTRY_DSN",
        "DB_PASS",
        # a secret word followed by an environment, version or encoding word, or a number:
        # the substring rule had them, the first word rule let them through (a review)
        "api_key_v2",
        "API_KEY_PROD",
        "OPENAI_API_KEY_BACKUP",
        "stripe_key_live",
        "privateKeyPem",
        "PRIVATE_KEY_PEM",
        "GITHUB_APP_PRIVATE_KEY_B64",
        "SIGNING_KEY_BASE64",
        "MASTER_KEY_1",
        "KEY_FILE",
        "ssh_key_path",
        "AWS_ACCESS_KEY_ID",
        "API_KEY_DATA",
        "SSH_KEY_PAIR",
        "KEYSTORE_B64",
        "sessionid",
        "JSESSIONID",
        "session",
        "SESSION_COOKIE",
        "DB_PASS_PROD",
        "GH_PAT_2",
        "sentry_dsn_prod",
        "pw",
        "PASSWORD_1",
        "secret_v2",
        "token_prod",
        "ACCESS_TOKENS",
        # one-time codes and what makes them (the names let them through before)
        "OTP",
        "otp_code",
        "SMS_OTP",
        "TOTP_SEED",
        "hotp_counter_secret",
        "PASSCODE",
        "pincode",
        "PIN_CODE",
        "MFA_CODE",
        "mfaCode",
        "verification_code",
        "RECOVERY_CODES",
        "backup_codes",
    ],
)
def test_secret_looking_names(name: str) -> None:
    assert looks_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "OMP_NUM_THREADS",
        "KMP_AFFINITY",
        "CUDA_VISIBLE_DEVICES",
        "PATH",
        "PYTHONHASHSEED",
        # a secret word is a word of the name, not a substring (a stranger's report)
        "max_tokens",
        "num_tokens",
        "n_keys",
        "key_dim",
        "auth_mode",
        "tokenizer",
        "MONKEY",
        "keyboard",
        "primary_key",
        "sort_key",
        "prng_key",
        "pad_token",
        "eos_token_id",
        "maxTokens",
        # keys of data, tokenizer symbols and token settings, passes over data (a review)
        "text_key",
        "image_key",
        "labels_key",
        "obs_key",
        "cell_type_key",
        "categorical_covariate_keys",
        "labels_key_v2",
        "keys",
        "decoder_start_token_id",
        "start_token",
        "eot_token",
        "token_limit",
        "token_budget",
        "token_type_ids",
        "second_pass",
        "forward_pass",
        "session_name",
        "past_key_values",
        "key_padding_mask",
        "password_length",
        "password_min_length",
        "pwd_dir",
        "PWD",
        "signature_dim",
        "cookie_cutter",
        "token_embedding",
        "token_idx",
        "attn_key",
        "dropout_key",
        "author",
        "n_sessions",
        "pin_memory",
        "LED_PIN",
        "pin",
        "country_code",
        "exit_code",
        "backup_dir",
        "spotprice",
        "robot_pose",
        "dot_product",
    ],
)
def test_ordinary_names(name: str) -> None:
    assert not looks_secret_name(name)


_REVIEWED = {
    "max_tokens": 128,
    "n_keys": 3,
    "key_dim": 8,
    "auth_mode": "basic",
    "tokenizer": "wordpiece",
}


def test_parameters_named_with_token_or_key_in_a_word_are_kept_verbatim() -> None:
    """``-p max_tokens=128 -p n_keys=3 -p key_dim=8 -p auth_mode=basic -p tokenizer=wordpiece``
    were all stored as ``<redacted>`` (a plain verify replayed that text: NOT REPRODUCED), and
    ``wordpiece`` was scrubbed from the outputs, so ``-p tokenizer=sentencepiece`` verified as
    REPRODUCED. They are parameters like any other now: kept, replayed, never scrubbed."""
    assert redact.redact_parameters(_REVIEWED) == _REVIEWED
    assert redact.sensitive_parameters(_REVIEWED) == frozenset()
    secret = {"api_token": "plain", "DB_PASSWORD": "plain", "SSH_PRIVATE_KEY": 1, "key": "k"}
    assert redact.redact_parameters(secret) == dict.fromkeys(secret, REDACTED)
    assert redact.sensitive_parameters(secret) == frozenset(secret)


def test_redact_mapping_redacts_names_whole_and_values_by_content() -> None:
    out = redact.redact_mapping([("DB_PASSWORD", "plain"), ("OMP_NUM_THREADS", CANARIES["github"])])
    assert out == {"DB_PASSWORD": REDACTED, "OMP_NUM_THREADS": REDACTED}


def test_extra_patterns_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact_text("ticket ACME-CANARY-123456") == "ticket ACME-CANARY-123456"
    monkeypatch.setenv("REPROKIT_REDACT_PATTERNS", "ACME-[A-Z]+-\\d{6}\nuser=(?P<secret>\\w+)")
    assert redact_text("ticket ACME-CANARY-123456") == f"ticket {REDACTED}"
    assert redact_text("user=alice ok") == f"user={REDACTED} ok"


def test_extra_patterns_from_the_module_list(monkeypatch: pytest.MonkeyPatch) -> None:
    patterns = [*redact.SECRET_VALUE_PATTERNS, re.compile(r"internal-\d{4}")]
    monkeypatch.setattr(redact, "SECRET_VALUE_PATTERNS", patterns)
    assert redact_text("id internal-1234") == f"id {REDACTED}"


def test_invalid_extra_pattern_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROKIT_REDACT_PATTERNS", "ok\n(unclosed")
    with pytest.raises(UsageError, match=r"REPROKIT_REDACT_PATTERNS.*unclosed"):
        redact_text("anything")


def test_redaction_is_idempotent() -> None:
    text = " ".join(CANARIES.values())
    once = redact_text(text)
    assert redact_text(once) == once


def test_redact_url_keeps_urls_without_credentials_verbatim() -> None:
    assert redact_url("sqlite:////abs/path/mlflow.db") == "sqlite:////abs/path/mlflow.db"
    assert redact_url("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert redact_url("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


@pytest.mark.parametrize("length", [60, 200])
def test_a_result_value_is_redacted_before_it_is_cut(length: int) -> None:
    """A credential cut short is too short to be seen as one: its head was shown (a stranger's
    report: ``ghp_0123456789a...`` in the terminal, JUnit, JSON, HTML and annotations)."""
    from reprokit.results import encode_result
    from reprokit.results.describe import short_value, value_text

    token = "ghp_CANARY0123456789abcdefghijABCDEFGHIJ"
    for padding in range(0, length, 7):
        value = "x" * padding + f" postgresql://admin:hunter2@db/x {token}"
        result = encode_result("label", value)
        for shown in (short_value(result), short_value(result, length), value_text(result)):
            assert "CANARY" not in shown and "hunter2" not in shown, (padding, shown)
