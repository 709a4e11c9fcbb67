"""Canonical URLs: the identity of a link, the same for every copy of one article (pure).

:func:`canonical_url` strips what differs between copies of the same link
(tracking parameters, AMP variants, ``http`` vs ``https``, ``www.``,
fragments, parameter order, a trailing slash). The parser stores it with each
entry and story grouping treats two entries with the same one as the same
story, full stop: a module of its own so that parsing (and the poll workers)
need nothing of grouping.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["AMP_PARAMS", "TRACKING_PARAMS", "TRACKING_PREFIXES", "canonical_url"]

#: Query parameters that only say *how* a reader got to a page (campaign,
#: click and share ids, referrers), never *which* page. Compared casefolded.
#: Deliberately conservative: dropping a parameter that does select content
#: (``id``, ``p``, ``story``...) would make two different articles "the same
#: story" and hide one of them, so generic names like ``cid``, ``src``,
#: ``mod`` or ``track`` are left alone even though some sites use them for
#: tracking.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        # Ad-click ids: Facebook, Google, DoubleClick, Microsoft, Yandex, Instagram, TikTok, Twitter
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid",
        "igshid", "igsh", "ttclid", "twclid", "li_fat_id", "epik",
        # Mailchimp, HubSpot, Marketo, Vero, Oracle Eloqua, Salesforce
        "mc_cid", "mc_eid", "_hsenc", "_hsmi", "__hssc", "__hstc", "__hsfp", "hsctatracking",
        "mkt_tok", "vero_id", "vero_conv", "elqtrackid", "elqtrack", "sfmc_id", "sfmc_sub",
        # Google Analytics cross-domain linker
        "_ga", "_gl",
        # Publisher campaign / placement codes (Microsoft Start, NYT, Guardian, WaPo, CNN, BBC...)
        "ocid", "cmpid", "cmp", "icid", "smid", "smtyp", "partner", "ito", "xtor",
        "wt.mc_id", "wt.mc_ev", "s_cid", "s_kwcid", "sr_share", "soc_src", "soc_trk",
        "at_medium", "at_campaign", "at_custom1", "at_custom2", "at_custom3", "at_custom4",
        "ftag", "taid", "mbid", "spm", "share_id", "rb_clickid", "oly_anon_id", "oly_enc_id",
        "__twitter_impression", "rss_source", "feedtype", "ns_mchannel", "ns_source",
        "ns_campaign", "ns_linkname", "ns_fee", "cmpgn", "trk", "trkcampaign",
        # Referrers and sharing
        "ref", "ref_src", "ref_url", "referrer", "referer", "utm_hp_ref",
        # Yahoo consent redirects
        "guccounter", "guce_referrer", "guce_referrer_sig",
    }
)

#: Parameter *prefixes* that are tracking whatever follows (utm_source, pk_kwd, ...).
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hsa_", "piwik_", "matomo_")

#: AMP switches in the query: ``?amp``, ``?amp=1``, ``?outputType=amp``, and the
#: parameters Google's AMP viewer appends.
AMP_PARAMS: frozenset[str] = frozenset({"amp", "_amp", "amp_js_v", "amp_gsa", "usqp", "aoh"})

_DEFAULT_PORTS = frozenset({80, 443})
_HOST_PREFIXES = ("www.", "amp.", "m.")  # www.x.com, amp.x.com, m.x.com -> x.com
_AMP_CACHE_PATH = re.compile(r"^/(?:amp/s/|[cvi]/(?:s/)?)(?P<rest>[^/].*)$")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# Characters left as they are when re-quoting a path: RFC 3986 reserved + unreserved + "%".
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


def canonical_url(url: str) -> str:
    """The identity of a link: the same for every copy of one article URL.

    Rules, applied to ``http``/``https`` URLs only:

    * scheme ``http`` becomes ``https``: for dedupe they are the same page, and
      feeds routinely mix them;
    * host lowercased, trailing dot removed, one leading ``www.``, ``amp.`` or
      ``m.`` removed (as long as a dot is left), user info dropped, default
      ports (80, 443) dropped;
    * Google AMP cache links (``google.com/amp/s/...``,
      ``*.cdn.ampproject.org/c/s/...``) become the publisher's URL;
    * AMP variants: a trailing ``/amp`` path segment or ``.amp`` suffix,
      ``.amp.html`` -> ``.html``, and the query switches in :data:`AMP_PARAMS` and
      ``outputType=amp`` are removed;
    * fragment dropped; tracking parameters (:data:`TRACKING_PARAMS`,
      :data:`TRACKING_PREFIXES`) dropped; the remaining parameters sorted;
    * path: percent-escapes normalised, trailing slash removed, empty path ->
      ``/``.

    Anything else (other schemes, no host, a bad port, non-text garbage) is
    returned stripped but otherwise untouched: this never raises, because a
    broken link in one feed must not stop the loop.
    """
    stripped = url.strip()
    try:
        plain = _PLAIN.fullmatch(stripped)
        return (plain and _canonical_plain(plain)) or _canonical(stripped)
    except ValueError:
        return stripped


#: A link in the shape most feeds write: http(s), a host of letters, digits, dots
#: and hyphens (no user info, port or brackets), a path of characters quote()
#: leaves as they are (no percent-escape), then a query and a fragment without
#: whitespace. urlsplit's parts of such a link are the groups of this regex.
_PLAIN = re.compile(r"https?://([A-Za-z0-9.-]+)(/[A-Za-z0-9/_.~!$&'()*+,;=:@-]*)?"
                    r"(?:\?([^#\s]*))?(?:#.*)?", re.S)


def _canonical_plain(plain: re.Match[str]) -> str:
    """:func:`_canonical` of a link of the plain shape without urlsplit, quote and
    urlunsplit, which would leave it as it is; "" for a host that leaves nothing
    after its prefixes or that Google's AMP cache uses (:func:`_canonical` decides)."""
    host = _bare_host(plain.group(1).lower())
    if not host or host == "google.com" or host.endswith(".cdn.ampproject.org"):
        return ""
    query = _canonical_query(plain.group(3) or "")
    return f"https://{host}{_trimmed_path(plain.group(2) or '')}" + (f"?{query}" if query else "")


def _canonical(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return url
    host = _canonical_host(parts)
    path = _canonical_path(parts.path)

    cached = _AMP_CACHE_PATH.match(path)
    if cached and (host == "google.com" or host.endswith(".cdn.ampproject.org")):
        inner = cached.group("rest")
        if parts.query:
            inner += "?" + parts.query
        return _canonical("https://" + inner)

    query = _canonical_query(parts.query)
    return urlunsplit(("https", host, path, query, ""))


def _canonical_host(parts: SplitResult) -> str:
    host = _bare_host(parts.hostname or "")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port  # raises ValueError on a bad port: caller returns the input
    if port is not None and port not in _DEFAULT_PORTS:
        host = f"{host}:{port}"
    return host


def _bare_host(host: str) -> str:
    """A lowercased host without its trailing dot and its www., amp. and m. prefixes."""
    host = host.rstrip(".")
    stripping = host.startswith(_HOST_PREFIXES)
    while stripping:
        stripping = False
        for prefix in _HOST_PREFIXES:
            if host.startswith(prefix) and "." in host[len(prefix) :]:
                host = host[len(prefix) :]
                stripping = True
    return host


def _canonical_path(path: str) -> str:
    path = _PERCENT_ESCAPE.sub(_normalise_escape, path)
    return _trimmed_path(quote(path, safe=_PATH_SAFE))


def _trimmed_path(path: str) -> str:
    """A quoted path without its trailing slashes and AMP suffixes; ``/`` if empty."""
    if not path.endswith(("/", "amp", ".amp.html")):
        return path or "/"
    while True:
        before = path
        path = path.rstrip("/")
        if path.endswith("/amp"):
            path = path[: -len("/amp")]
        if path.endswith(".amp.html"):
            path = path[: -len(".amp.html")] + ".html"
        if path.endswith(".amp"):
            path = path[: -len(".amp")]
        if path == before:
            break
    return path or "/"


def _normalise_escape(match: re.Match[str]) -> str:
    """``%7e`` -> ``~`` (unreserved characters need no escape), ``%2f`` -> ``%2F``."""
    char = unquote(match.group(0))
    if char.isascii() and (char.isalnum() or char in "-._~"):
        return char
    return match.group(0).upper()


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    kept = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        folded = key.casefold()
        if folded in TRACKING_PARAMS or folded.startswith(TRACKING_PREFIXES):
            continue
        if folded in AMP_PARAMS or (folded == "outputtype" and value.casefold() == "amp"):
            continue
        kept.append((key, value))
    kept.sort()
    return urlencode(kept)
