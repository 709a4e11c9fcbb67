"""Secrets out of what we show, log and store (pure).

Two kinds of text leave the process and may carry a secret:

* URLs we were configured with (a feed at ``https://user:pass@host/?token=...``,
  a state URL with its password): :func:`url` keeps them recognisable and
  drops the credentials;
* error strings written by someone else (a Slack Web API error, an SMTP reply,
  a driver's message, an exception naming a URL): a server that echoes our
  token or the AUTH exchange must not put it into logs, ``alerts`` or
  ``feeds``. :func:`text` makes one clean line of them, capped, with anything
  token-like replaced by :data:`MASK`.

Redaction errs towards hiding: an error message that loses a long
random-looking word is still an error message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.sanitize import cap, strip_control

MASK = "[redacted]"
TEXT_MAX = 500  # characters of a foreign error string we keep

#: Query parameters whose values are credentials.
#: The word may end a longer name, after _ or - (access_token) or run on in camel
#: case (accessToken, clientSecret, apiKey: an upper-case letter starts it).
_SECRET_PARAMS = re.compile(
    r"^(?:.*[_-])?(?:token|key|apikey|secret|password|passwd|pwd|pass|auth|sig|signature|"
    r"code|session|sid|credential|credentials)$"
    r"|(?-i:^[A-Za-z0-9]*[a-z0-9](?:Token|Key|Secret|Password|Passwd|Pwd|Pass|Auth|Sig|"
    r"Signature|Code|Session|Sid|Credentials?)$)", re.I)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # credentials inside a URL: scheme://user:password@host
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):[^/@\s]*@"), rf"\1:{MASK}@"),
    # Slack tokens (bot, user, app, refresh, config...) and app-level tokens
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]+"), MASK),
    (re.compile(r"\bxapp-[A-Za-z0-9-]+"), MASK),
    # Slack webhook paths
    (re.compile(r"hooks\.slack\.com/\S+"), f"hooks.slack.com/{MASK}"),
    # HTTP authorisation schemes
    (re.compile(r"\b(Bearer|Basic|Digest|Token)\s+[^\s,;]+", re.I), rf"\1 {MASK}"),
    # SMTP AUTH exchanges: AUTH PLAIN <blob>, AUTH LOGIN <blob>
    (re.compile(r"\b(AUTH\s+(?:PLAIN|LOGIN|CRAM-MD5|XOAUTH2))\s+\S+", re.I), rf"\1 {MASK}"),
    # key=value and key: value credentials
    (re.compile(r"\b((?:[A-Za-z]+[_-])?(?:password|passwd|pwd|secret|token|api[_-]?key|"
                r"access[_-]?key|auth|credentials?))(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;]+)",
                re.I), rf"\1\2{MASK}"),
)
# A long run of base64 or hex that looks random (mixed case with a digit or
# +/=, or just long): an AUTH blob, an API key, a session id.
_BLOB = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")


def _blob(m: re.Match[str]) -> str:
    word = m.group(0)
    if "/" in word and not any(c.isupper() or c in "+=" for c in word):
        # A path (/var/lib/news-monitor/state): lower-case words between slashes.
        # Thirty-two characters of base64 all without upper case are one in ten
        # million; a secret's run has its capitals.
        return word
    lower = any(c.islower() for c in word)
    upper = any(c.isupper() for c in word)
    digit = any(c.isdigit() or c in "+/=" for c in word)
    if len(word) >= 32 and (digit or (lower and upper)):
        return MASK
    if lower and upper and digit:
        return MASK
    if word.endswith("=") and (lower or upper):
        return MASK
    return word


def text(value: str, limit: int = TEXT_MAX, *, secrets: Iterable[str] = ()) -> str:
    """A foreign error string fit to log, store and print.

    One line, no control characters, known ``secrets`` (a configured token or
    password) and anything token-like replaced, at most ``limit`` characters.
    """
    out = strip_control(value[: limit * 4]).strip()
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        out = pattern.sub(repl, out)
    out = _BLOB.sub(_blob, out)
    return cap(out, limit)


def url_secrets(value: str) -> list[str]:
    """The secrets a URL carries (its password, credential-named query values), for
    :func:`text` to mask where a server echoes them back in an error."""
    _, password, _ = _userinfo(value)
    # and its pieces: libpq ends a password at its first @ and calls the rest a host
    secrets = [password or "", *(password or "").split("@")[1:]]
    try:
        parts = urlsplit(value)
        secrets.append(parts.password or "")
        secrets += [v for k, v in parse_qsl(parts.query, keep_blank_values=True)
                    if _SECRET_PARAMS.match(k)]
    except ValueError:
        pass
    return [s for s in dict.fromkeys(secrets) if s]


def _userinfo(value: str) -> tuple[str, str | None, str]:
    """(``scheme://user``, password, ``host...``) of a URL whose credentials end
    at some ``@``; (value, None, "") when it has no password. Read as loosely
    as any client might: libpq takes ``postgres:Pa#ss@host`` (a ``#`` or ``?``
    in the password) where urlsplit ends the host at the ``#`` and finds no
    credentials; ``user:p@ss@host`` ends at the last ``@``; a ``/`` in the
    password counts where what precedes it is no ``host:port``. An ``@`` in a
    path (``/feed/@user``) or a query is not one."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value, None, ""
    for at in [i for i, c in enumerate(rest) if c == "@"][::-1]:
        creds = rest[:at]
        slash = creds.find("/")
        if slash >= 0:
            head = creds[:slash]
            if ":" not in head or head.rsplit(":", 1)[1].isdigit():
                continue
        if ":" not in creds:
            return value, None, ""
        user, _, password = creds.partition(":")
        return f"{scheme}://{user}", password, rest[at + 1:]
    return value, None, ""


def url(value: str) -> str:
    """A URL without its credentials: the password (and any credential-named
    query parameter) becomes :data:`MASK`; the user name stays, so it is still
    clear which account is meant."""
    value = strip_control(value)
    try:
        parts = urlsplit(value)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(_SECRET_PARAMS.match(k) for k, _ in pairs):  # else as it is: urlunsplit
            query = urlencode(  # would normalise sqlite:////path
                [(k, MASK if _SECRET_PARAMS.match(k) else v) for k, v in pairs], safe="[]")
            value = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    except ValueError:  # not a URL we can take apart: hide what looks secret
        value = text(value, limit=len(value) + 1)
    user, password, host = _userinfo(value)
    return value if password is None else f"{user}:{MASK}@{host}"
