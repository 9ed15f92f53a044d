"""Keep secrets out of everything reprokit writes: detection and redaction.

Three layers, each conservative (a false positive costs a ``<redacted>`` in a report, a
false negative leaks a credential):

- **Names** (:func:`looks_secret_name`): a variable whose name has a secret *word* (split at
  punctuation and camelCase) is secret whatever its value: a word of
  :data:`SECRET_NAME_WORDS` (``TOKEN``, ``SECRET``, ``PASSWORD``, ``PWD``, ``CREDENTIALS``,
  ...), a last ``KEY`` after a word of :data:`SECRET_KEY_QUALIFIERS` (``API``, ``ACCESS``,
  ``PRIVATE``, ...), ``AUTH`` not followed by a setting (``auth_mode``), and a few more.
  Substrings do not count: a false positive is not free, since a parameter recorded as
  ``<redacted>`` is replayed as that text and its value is scrubbed from the outputs, so
  ``max_tokens``, ``key_dim``, ``tokenizer`` or ``MONKEY`` must stay readable.
- **Values** (:func:`looks_secret_value`, :func:`redact_text`): the regexes in
  :data:`SECRET_VALUE_PATTERNS` recognise credential formats (AWS key ids and secret keys,
  GitHub/GitLab/Slack/Hugging Face/OpenAI/Google/Stripe tokens, JWTs, PEM private keys,
  ``password=...`` pairs, ``Bearer`` headers, Slack/Discord/Teams webhook URLs) and any
  long high-entropy word
  (:func:`_high_entropy`) is treated as a credential as well.
- **URLs** (:func:`redact_url`): userinfo (``user:password@``) is dropped and query
  parameters that look secret (``?token=...``, ``X-Amz-Signature=...``) are redacted.

Adding a pattern: append a compiled regex to :data:`SECRET_VALUE_PATTERNS` (a library that
embeds reprokit), or set ``REPROKIT_REDACT_PATTERNS`` to one or more Python regexes, one per
line (``export REPROKIT_REDACT_PATTERNS=$'acme_[0-9a-f]{32}\\nINTERNAL-\\d{6}'``).  Every
match of a pattern is replaced by :data:`REDACTED`; when the pattern has a group named
``secret``, only that group is (``user=(?P<secret>\\w+)`` keeps ``user=``).  An invalid
regex there is a :class:`~reprokit.exceptions.UsageError` (silently ignoring it could leak
what it was meant to hide).
"""

from __future__ import annotations

import math
import os
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import accumulate, pairwise
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from reprokit.exceptions import UsageError

REDACTED = "<redacted>"
"""The fixed marker that replaces a secret."""

PATTERNS_ENV_VAR = "REPROKIT_REDACT_PATTERNS"

SECRET_NAME_WORDS: list[str] = [
    "PASSWORD",
    "PASSWORDS",
    "PASSWD",
    "PWD",
    "PASSPHRASE",
    "SECRET",
    "SECRETS",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
    "TOKEN",
    "APIKEY",
    "COOKIE",
    "COOKIES",
    "SIGNATURE",
    "SESSIONID",
    "SESSID",
    "OTP",
    "PASSCODE",
    "PINCODE",
]
"""Words that make a name secret wherever they stand, also closing a word of their own
(``HFTOKEN``, ``DBPASSWORD``, ``TOTP``): ``GITHUB_TOKEN``, ``db_password``, ``clientSecret``,
``TOTP_SEED``. A name's
words are split at ``_``, ``-``, ``.`` and other punctuation and at camelCase humps. ``TOKEN``
is singular: ``max_tokens`` is a count. One exception: a token after a word of
:data:`VOCABULARY_TOKEN_WORDS` is a tokenizer's symbol (``pad_token``, ``eos_token``)."""

VOCABULARY_TOKEN_WORDS: list[str] = [
    "PAD", "EOS", "BOS", "EOT", "EOD", "SOT", "UNK", "SEP", "CLS", "MASK", "SPECIAL", "START",
    "END", "STOP", "IMAGE", "AUDIO", "VIDEO", "VISION", "NEWLINE", "IGNORE", "MAX", "MIN", "NUM",
    "N",
]  # fmt: skip
"""Words before ``TOKEN`` that make it a tokenizer's symbol or a count, not a credential
(``pad_token``, ``decoder_start_token_id``, ``eot_token``)."""

TOKEN_SETTING_WORDS: list[str] = [
    "LIMIT", "LIMITS", "BUDGET", "BUDGETS", "COUNT", "COUNTS", "LENGTH", "LEN", "SIZE", "TYPE",
    "TYPES", "IDS", "EMBEDDING", "EMBEDDINGS", "IDX", "INDEX", "POS", "POSITION", "DROPOUT",
    "MIXER", "CLASSIFIER", "DIM",
]  # fmt: skip
"""Words after ``TOKEN`` that make the name a setting about tokens, not a credential
(``token_limit``, ``token_budget``, ``token_type_ids``)."""

SECRET_KEY_QUALIFIERS: list[str] = [
    "API", "ACCESS", "SECRET", "PRIVATE", "AUTH", "SIGNING", "ENCRYPTION", "DECRYPTION",
    "CRYPTO", "MASTER", "CLIENT", "CONSUMER", "ACCOUNT", "SHARED", "SERVICE", "SESSION",
    "SUBSCRIPTION", "LICENSE", "STORAGE", "SSH", "GPG", "PGP", "RSA", "HMAC", "AES", "DEPLOY",
    "WEBHOOK", "APP", "REFRESH", "BEARER",
]  # fmt: skip
"""Words before a last word ``KEY``/``KEYS`` that make it a credential (``api_key``,
``SSH_PRIVATE_KEY``, ``accessKey``), also written as one word: ``APIKEY``, ``SECRETKEY``;
and before ``TOKENS``, which is otherwise a count: ``ACCESS_TOKENS``, ``refresh_tokens``."""

ORDINARY_KEY_QUALIFIERS: list[str] = [
    "SORT", "PRNG", "RNG", "RANDOM", "SEED", "JAX", "PRIMARY", "FOREIGN", "UNIQUE",
    "COMPOSITE", "PARTITION", "SHARD", "SHARDING", "CLUSTER", "JOIN", "GROUP", "GROUPBY",
    "INDEX", "LOOKUP", "HASH", "DICT", "MAP", "CACHE", "ROW", "COLUMN", "COL", "FIELD", "ATTR",
    "NAME", "LABEL", "TARGET", "FEATURE", "DATA", "DATASET", "SPLIT", "BATCH", "METRIC",
    "RESULT", "OUTPUT", "INPUT", "CONFIG", "LAYER", "MODEL", "MATCH", "OBJECT", "BUCKET",
    "QUERY", "VALUE", "NODE", "EDGE", "ENTITY", "MERGE", "DEDUP", "N", "NUM", "MAX", "MIN",
    "TOP", "FIRST", "LAST", "NEXT", "PREV", "HOT", "SHORTCUT", "TEXT", "IMAGE", "AUDIO",
    "VIDEO", "CAPTION", "PROMPT", "RESPONSE", "QUESTION", "ANSWER", "CONTEXT", "LABELS",
    "TARGETS", "CLASS", "CATEGORY", "SAMPLE", "TIME", "DATE", "WEIGHT", "SCORE", "TYPE", "ID",
    "OBS", "OBSM", "OBSP", "VAR", "VARM", "UNS", "COVARIATE", "FACTOR", "PAST", "ATTN",
    "ATTENTION", "DROPOUT", "KEYPOINT",
]  # fmt: skip
"""Words before a last ``KEY``/``KEYS`` that make it a key of data, not a credential
(``sort_key``, ``prng_key``, ``primary_key``, ``n_keys``, ``labels_key``,
``categorical_covariate_keys``). Any other last ``KEY`` is secret, ``OPENAI_KEY`` and ``KEY``
alone too: a credential under a vendor's name is the common case, and a false negative leaks
it. ``KEYS`` alone is a mapping's keys."""

AUTH_WORDS: list[str] = ["AUTH", "OAUTH", "AUTHORIZATION"]
"""Words that make a name secret unless a word of :data:`AUTH_SETTING_WORDS` follows them:
``BASIC_AUTH``, ``HTTP_AUTHORIZATION``, ``auth_header`` are secret, ``auth_mode`` is not."""

AUTH_SETTING_WORDS: list[str] = [
    "MODE", "TYPE", "METHOD", "METHODS", "SCHEME", "PROVIDER", "BACKEND", "ENABLED",
    "DISABLED", "REQUIRED", "URL", "URI", "HOST", "SERVER", "ENDPOINT", "DOMAIN", "VERSION",
    "TIMEOUT", "FLOW", "STRATEGY",
]  # fmt: skip
"""Words after an :data:`AUTH_WORDS` word that make the name a setting, not a credential."""

SECRET_NAME_PAIRS: list[tuple[str, str]] = [
    ("SESSION", "ID"),
    ("CONNECTION", "STRING"),
    ("PIN", "CODE"),
    ("MFA", "CODE"),
    ("VERIFICATION", "CODE"),
    ("RECOVERY", "CODE"),
    ("RECOVERY", "CODES"),
    ("BACKUP", "CODES"),
]
"""Two words in a row that make a name secret (``SESSION_ID``, ``AZURE_CONNECTION_STRING``,
``MFA_CODE``). ``PIN`` alone is not: it is a pin of a board (``LED_PIN``) or ``pin_memory``
as often as a secret number."""

SECRET_LAST_WORDS: list[str] = ["PAT", "PASS", "PW", "DSN", "KEYFILE", "KEYPAIR", "KEYSTORE"]
"""Words that make a name secret when they end it, before any :data:`NAME_SUFFIX_WORDS`
(``GH_PAT``, ``DB_PASS``, ``pw``, ``SENTRY_DSN``, ``DB_PASS_PROD``)."""

ORDINARY_PASS_QUALIFIERS: list[str] = [
    "FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "LAST", "FINAL", "NEXT", "PREV", "PREVIOUS",
    "SINGLE", "DOUBLE", "MULTI", "ONE", "TWO", "THREE", "FORWARD", "BACKWARD", "EXTRA", "N",
    "NUM",
]  # fmt: skip
"""Words before a last ``PASS`` that make it a pass over data, not a password
(``second_pass``, ``forward_pass``)."""

NAME_SUFFIX_WORDS: list[str] = [
    "PROD", "PRODUCTION", "PRD", "DEV", "DEVELOPMENT", "STAGING", "STAGE", "STG", "LIVE",
    "TEST", "TESTING", "QA", "UAT", "SANDBOX", "LOCAL", "CI", "BACKUP", "BAK", "OLD", "NEW",
    "CURRENT", "CUR", "PREVIOUS", "ROTATED", "ALT", "SECONDARY", "V", "B", "BASE", "PEM", "HEX",
    "RAW", "DER", "ENC", "ENCODED", "FILE", "PATH", "ID", "DATA", "VALUE", "VAL", "STRING",
    "STR", "TEXT", "TXT", "JSON", "CONTENT", "CONTENTS", "BYTES", "MATERIAL", "PAIR", "LIST",
    "DEFAULT", "OVERRIDE", "ENV", "VAR",
]  # fmt: skip
"""Words (and numbers) that may end a name after the word that makes it secret, which stays
secret: environments, versions, encodings, files (``api_key_v2``, ``stripe_key_live``,
``SIGNING_KEY_BASE64``, ``privateKeyPem``, ``MASTER_KEY_1``, ``KEY_FILE``). A file's name is
not the key, but redacting it is the safe side."""

SESSION_SETTING_WORDS: list[str] = [
    "NAME", "NAMES", "COUNT", "NUMBER", "NUM", "TIMEOUT", "LENGTH", "LEN", "DURATION", "TYPE",
    "INDEX", "IDX", "DIR", "FOLDER", "PATH", "MODE", "LIMIT", "SIZE", "START", "END", "DATE",
]  # fmt: skip
"""Words after ``SESSION`` that make the name a setting; any other ``SESSION`` is secret
(``session``, ``SESSION_ID``, ``session_cookie``), and ``session_name`` is not."""

SECRET_NAME_PARTS: list[str] = [
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "KEY", "CREDENTIAL", "AUTH",
    "PRIVATE", "SESSION", "COOKIE", "SIGNATURE", "CONNECTIONSTRING", "PWD",
]  # fmt: skip
"""The backstop: a name that the word rules let through is still secret when, written
without separators, it holds one of these, unless each place it does is a word the rules
explain as ordinary (:func:`_explained`): ``passPhrase``, ``privkey``, ``hf_tokens``,
``openai_key_eu``, ``oauthkey`` stay secret; ``max_tokens``, ``tokenizer``, ``key_dim`` do
not."""

ORDINARY_NAME_WORDS: list[str] = [
    "TOKENIZER", "TOKENIZERS", "TOKENIZE", "TOKENIZED", "TOKENIZATION", "DETOKENIZE",
    "MONKEY", "MONKEYS", "KEYBOARD", "KEYBOARDS", "KEYWORD", "KEYWORDS", "KEYPOINT",
    "KEYPOINTS", "KEYFRAME", "KEYFRAMES", "KEYSTROKE", "KEYSTROKES", "DONKEY", "TURKEY",
    "HOCKEY", "JOCKEY", "WHISKEY", "AUTHOR", "AUTHORS", "AUTHORED", "SESSIONS",
]  # fmt: skip
"""Whole words that hold a part of :data:`SECRET_NAME_PARTS` and name no secret."""

KEY_SETTING_WORDS: list[str] = [
    "DIM", "DIMS", "SIZE", "LEN", "LENGTH", "NAME", "NAMES", "FN", "FUNC", "FUNCTION", "COLUMN",
    "COL", "FIELD", "INDEX", "IDX", "ORDER", "TYPE", "PADDING", "MASK", "VALUE", "VALUES",
]  # fmt: skip
"""Words after ``KEY``/``KEYS`` that make the name a setting about keys (``key_dim``,
``key_fn``), not a key."""

PASSWORD_SETTING_WORDS: list[str] = [
    "LENGTH", "LEN", "MIN", "MAX", "POLICY", "STRENGTH", "RULES", "DIR", "PROMPT",
]  # fmt: skip
"""Words after ``PASSWORD``/``PASSWD``/``PWD`` that make the name a setting
(``password_length``, ``pwd_dir``); ``PWD`` alone is the shell's working directory."""

_QUERY_SECRET_KEYS = frozenset(
    {"sig", "signature", "code", "x-amz-signature", "x-amz-credential", "x-goog-signature"}
)

SECRET_VALUE_PATTERNS: list[re.Pattern[str]] = [
    # PEM private key blocks, also a truncated one (no END line)
    re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
        r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        re.DOTALL,
    ),
    # AWS access key ids
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    # GitHub, GitLab, Slack, Hugging Face, OpenAI/Anthropic-style, Google, Stripe, npm, PyPI
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"),
    re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    re.compile(r"\bxox[abeoprs]-[A-Za-z0-9\-]{10,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    re.compile(r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
    re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
    re.compile(r"\bpypi-[A-Za-z0-9_\-]{50,}"),
    # JSON Web Tokens
    re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),
    # incoming-webhook URLs, whose path is the credential (the host is kept): Slack,
    # Discord, Microsoft Teams / Office 365
    re.compile(
        r"(?i)\bhooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9/_\-]+)"
    ),
    re.compile(r"(?i)\bdiscord(?:app)?\.com/api/webhooks/(?P<secret>[0-9]+/[A-Za-z0-9_\-]+)"),
    re.compile(
        r"(?i)\b(?:[a-z0-9\-]+\.webhook\.office\.com/webhookb2|outlook\.office(?:365)?\.com"
        r"/webhook)/(?P<secret>[^\s\"'<>]+)"
    ),
    # "Authorization: Bearer ..." and friends
    re.compile(r"(?i)\b(?:bearer|basic|token) +(?P<secret>[A-Za-z0-9._~+/\-]{16,}=*)"),
    # key=value / "key": "value" pairs whose key says secret (the key itself is kept)
    re.compile(
        r"(?i)(?<![A-Za-z0-9])(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key"
        r"|secret[_-]?key|private[_-]?key)\"?\s*[=:]\s*\"?(?P<secret>[^\s\"',;&]+)"
    ),
    # Azure-style connection strings
    re.compile(r"(?i)\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)=(?P<secret>[^;\s]+)"),
    # userinfo in URLs: scheme://user:password@host (the scheme and host are kept)
    re.compile(r"://(?P<secret>[^/\s@:]*:[^/\s@]*)@"),
]
"""Regexes whose every match is a credential; extend it or set ``REPROKIT_REDACT_PATTERNS``."""

# A 40-character base64 word: an AWS secret access key, checked by _aws_secret_like.
_BASE64_40 = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
# Words tested for entropy: no "/" or "." so that paths and dotted names split into parts.
_WORD = re.compile(r"[A-Za-z0-9+=_\-]{32,}")
_MIN_ENTROPY_BITS = 4.2


def looks_secret_name(name: str) -> bool:
    """True when a variable name suggests a secret (``GITHUB_TOKEN``, ``DB_PASSWORD``,
    ``api_key``, ``api_key_v2``), judged on its words (see :data:`SECRET_NAME_WORDS` and the
    lists after it): ``max_tokens``, ``key_dim``, ``auth_mode``, ``tokenizer`` are not."""
    words = _name_words(name)
    if not words:
        return False
    if _secret_last_word(_without_suffixes(words)):
        return True
    if any(pair in SECRET_NAME_PAIRS for pair in pairwise(words)):
        return True
    following = [*words[1:], ""]
    if any(
        _secret_word(word, before, after) and not _explained(words, k)
        for k, (before, word, after) in enumerate(
            zip(["", *words[:-1]], words, following, strict=True)
        )
    ):
        return True
    return _holds_unexplained_part(words)


def _holds_unexplained_part(words: list[str]) -> bool:
    """The backstop (:data:`SECRET_NAME_PARTS`): a part found across two words (``passPhrase``)
    or inside a word the rules do not explain as ordinary (``privkey``, ``hf_tokens``)."""
    compact = "".join(words)
    ends = list(accumulate(len(word) for word in words))
    for part in SECRET_NAME_PARTS:
        start = compact.find(part)
        while start >= 0:
            k = bisect_right(ends, start)  # the word the part starts in
            if start + len(part) > ends[k] or not _explained(words, k):
                return True
            start = compact.find(part, start + 1)
    return False


def _explained(words: list[str], k: int) -> bool:
    """Whether word ``k`` of a name, which holds a part of :data:`SECRET_NAME_PARTS`, is an
    ordinary word where it stands."""
    word = words[k]
    before, after = words[k - 1] if k else "", words[k + 1] if k + 1 < len(words) else ""
    if word in ORDINARY_NAME_WORDS:
        return True
    if word in ("TOKEN", "TOKENS"):
        return before in VOCABULARY_TOKEN_WORDS or after in TOKEN_SETTING_WORDS
    if word in ("KEY", "KEYS"):
        alone = len(words) == 1 and word == "KEYS"
        return alone or before in ORDINARY_KEY_QUALIFIERS or after in KEY_SETTING_WORDS
    if word in AUTH_WORDS:
        return after in AUTH_SETTING_WORDS
    if word == "SESSION":
        return after in SESSION_SETTING_WORDS
    if word in ("PASSWORD", "PASSWD", "PWD"):
        return after in PASSWORD_SETTING_WORDS or words == ["PWD"]
    if word == "SIGNATURE":
        return after in ("DIM", "SIZE", "LEN", "LENGTH")
    return word == "COOKIE" and after == "CUTTER"


def _name_words(name: str) -> list[str]:
    """The words of a name, upper case: ``hf_apiToken.v2`` -> ``HF``, ``API``, ``TOKEN``,
    ``V``, ``2``."""
    return [w.upper() for w in _NAME_WORD.findall(name)]


_NAME_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _without_suffixes(words: list[str]) -> list[str]:
    """``words`` without the :data:`NAME_SUFFIX_WORDS` and numbers that end them (at least
    one word is kept): ``API KEY V 2`` -> ``API KEY``."""
    end = len(words)
    while end > 1 and (words[end - 1] in NAME_SUFFIX_WORDS or words[end - 1].isdigit()):
        end -= 1
    return words[:end]


def _secret_last_word(words: list[str]) -> bool:
    last, before = words[-1], words[-2] if len(words) > 1 else ""
    if last == "PASS" and before in ORDINARY_PASS_QUALIFIERS:
        return False
    return last in SECRET_LAST_WORDS or _secret_key(last, before)


def _secret_word(word: str, before: str, after: str) -> bool:
    if word in AUTH_WORDS:
        return after not in AUTH_SETTING_WORDS
    if word == "SESSION":
        return after not in SESSION_SETTING_WORDS
    if word == "TOKEN" and (before in VOCABULARY_TOKEN_WORDS or after in TOKEN_SETTING_WORDS):
        return False
    if word == "TOKENS":
        return before in SECRET_KEY_QUALIFIERS
    return any(word.endswith(secret) for secret in SECRET_NAME_WORDS)


def _secret_key(last: str, before: str) -> bool:
    """A last ``KEY``/``KEYS`` unless a word of data comes before it (``KEYS`` alone is a
    mapping's keys), or a key qualifier and ``KEY`` written as one word (``APIKEY``)."""
    if last in ("KEY", "KEYS"):
        return before not in ORDINARY_KEY_QUALIFIERS and (before or last) != "KEYS"
    return any(last in (q + "KEY", q + "KEYS") for q in SECRET_KEY_QUALIFIERS)


def looks_secret_value(value: str) -> bool:
    """True when ``value`` is, or contains, something that looks like a credential."""
    return redact_text(value) != value


def redact_text(text: str) -> str:
    """``text`` with every credential-looking substring replaced by ``<redacted>``."""
    for pattern in (*SECRET_VALUE_PATTERNS, *_extra_patterns()):
        text = pattern.sub(_replace_secret, text)
    text = _BASE64_40.sub(lambda m: REDACTED if _aws_secret_like(m.group()) else m.group(), text)
    return _WORD.sub(lambda m: REDACTED if _high_entropy(m.group()) else m.group(), text)


def redact_url(url: str) -> str:
    """``url`` without credentials: userinfo dropped, secret-looking query values redacted.

    ``https://user:TOKEN@host/repo.git`` becomes ``https://host/repo.git``.  A user name
    alone is kept when it is short and not secret-looking (``ssh://git@host/r.git``), since
    a bare token as user name (``https://ghp_...@github.com``) is a common way to log in.
    Strings that are not ``scheme://`` URLs (``git@host:org/repo.git``, local paths) go
    through :func:`redact_text`.
    """
    if "://" not in url:
        return redact_text(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 host; fall back to text redaction
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        keep_user = not has_password and len(user) <= 32 and not looks_secret_value(user)
        netloc = f"{user}@{hostport}" if keep_user and user else hostport
    query = _redact_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        # nothing to strip: keep the URL as written (urlunsplit would turn the empty
        # authority of ``sqlite:////abs/x.db`` into ``sqlite://abs/x.db``)
        return redact_text(url)
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def redact_mapping(values: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Redact ``name -> value`` pairs: secret names entirely, other values by content."""
    return {
        name: REDACTED if looks_secret_name(name) else redact_text(value) for name, value in values
    }


def _replace_secret(match: re.Match[str]) -> str:
    """The match with its ``secret`` group (or, without one, all of it) replaced."""
    if "secret" not in match.re.groupindex:
        return REDACTED
    start, end = match.span("secret")
    if start < 0:  # the group did not take part in the match
        return REDACTED
    whole = match.group()
    offset = match.start()
    return whole[: start - offset] + REDACTED + whole[end - offset :]


def _redact_query(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    redacted = [
        (key, REDACTED if _secret_query_key(key) or looks_secret_value(value) else value)
        for key, value in pairs
    ]
    if redacted == pairs:
        return query  # keep the original encoding when nothing was secret
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='<>')}" for k, v in redacted)


def _secret_query_key(key: str) -> bool:
    return key.lower() in _QUERY_SECRET_KEYS or looks_secret_name(key)


def _aws_secret_like(word: str) -> bool:
    """40 base64 characters of all three classes and few slashes: not a path, not a hex SHA."""
    return (
        word.count("/") <= 2
        and not word.startswith("/")
        and any(c.isupper() for c in word)
        and any(c.islower() for c in word)
        and any(c.isdigit() for c in word)
    )


def _high_entropy(word: str) -> bool:
    """A long word mixing upper case, lower case and digits with random-looking spread.

    Hex digests, UUIDs and snake_case identifiers lack a letter case, so they stay.
    """
    if not (
        any(c.isupper() for c in word)
        and any(c.islower() for c in word)
        and any(c.isdigit() for c in word)
    ):
        return False
    counts = Counter(word)
    total = len(word)
    entropy = -sum(n / total * math.log2(n / total) for n in counts.values())
    return entropy >= _MIN_ENTROPY_BITS


_extra_cache: tuple[str, tuple[re.Pattern[str], ...]] = ("", ())


def _extra_patterns() -> tuple[re.Pattern[str], ...]:
    """The regexes of ``REPROKIT_REDACT_PATTERNS``, compiled once per distinct value."""
    global _extra_cache
    raw = os.environ.get(PATTERNS_ENV_VAR, "")
    if raw == _extra_cache[0]:
        return _extra_cache[1]
    compiled = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            compiled.append(re.compile(line))
        except re.error as exc:
            raise UsageError(
                f"{PATTERNS_ENV_VAR}: invalid regular expression {line!r}: {exc}",
                option=PATTERNS_ENV_VAR,
            ) from None
    _extra_cache = (raw, tuple(compiled))
    return _extra_cache[1]


def redact_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook parameters as MLflow params, the lock and the runner's plan line show them:
    a secret-looking name's value becomes ``<redacted>`` whatever its type, credential-looking
    text inside a string (also nested in lists and dicts) is redacted, other values are kept."""
    return {
        name: REDACTED if looks_secret_name(name) else _redact_json(value)
        for name, value in values.items()
    }


def sensitive_parameters(values: Mapping[str, Any]) -> frozenset[str]:
    """The names of the parameters that :func:`redact_parameters` changes: their values must
    reach a kernel without being written into a notebook."""
    shown = redact_parameters(values)
    return frozenset(name for name, value in values.items() if shown[name] != value)


def hidden_parts(name: str, value: Any) -> dict[str, Any]:
    """What :func:`redact_parameters` hides of the parameter ``name``, by where it is: the
    whole value (``name``) when redaction changes it, and inside it each value under a
    secret-looking key and each text redaction changes (``config.password``,
    ``hosts[1]``), with the texts and numbers a hidden list or mapping holds, so that a
    notebook printing ``config`` (as Python writes it, not as JSON) can be scrubbed part by
    part. Empty for a parameter redaction leaves as it is."""
    if looks_secret_name(name):
        return {name: value} | _leaves(name, value)
    inside = _hidden_inside(name, value)
    return {name: value} | inside if inside else {}


def _hidden_inside(path: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {path: value} if redact_text(value) != value else {}
    found: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if looks_secret_name(str(key)):
                found |= {where: item} | _leaves(where, item)
            else:
                found |= _hidden_inside(where, item)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found |= _hidden_inside(f"{path}[{i}]", item)
    return found


def _leaves(path: str, value: Any) -> dict[str, Any]:
    """The texts and numbers inside a list or mapping, by where they are."""
    if isinstance(value, dict):
        pairs = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list | tuple):
        pairs = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        return {}
    found: dict[str, Any] = {}
    for where, item in pairs:
        plain = isinstance(item, str | int | float) and not isinstance(item, bool)
        found |= {where: item} if plain else _leaves(where, item)
    return found


def _redact_json(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple):
        return [_redact_json(item) for item in value]
    if isinstance(value, dict):
        return {
            key: REDACTED if looks_secret_name(str(key)) else _redact_json(item)
            for key, item in value.items()
        }
    return value
