"""Secrets never printed or stored: one masking function, `mask_url`, for URLs, messages and documents.

A storage URL's password may hold any character: spaces, quotes, '<', '>', '%', and even '@',
'#', '?', '/' and ':' when the user did not percent-encode them. So the userinfo is taken to end
at the LAST '@' of the URL, never at the first '/', '?' or '#' (which would stop inside such a
password); when a query string holds an '@' this masks too much, never too little. Query keys
that carry secrets (`password=`, `sslpassword=`, `passwd=`, `token=`, ...) are masked too, their
value running up to the next `&key=`.

In free text (an error message) a URL runs from its scheme to the end of its line, to the last
'@' that is followed by a host, so a password with a space in it is still masked; and the
passwords of URLs the caller knows (`known`) are removed verbatim, in their raw and decoded
forms, wherever a driver quoted them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "secret", "client_secret", "token", "access_token",
               "auth_token", "api_key", "apikey")
MIN_SCRUB = 3  # a known password shorter than this is not removed verbatim from text: it would erase ordinary letters

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_AFTER_AT = re.compile(r"@[A-Za-z0-9._~%\[\]:,-]*(?=[/?#\s'\"<>)\],;]|$)")
_KEY = "|".join(SECRET_KEYS)
_QUERY_SECRET = re.compile(rf"(?is)([?&;](?:{_KEY})=)(.*?)(?=&[A-Za-z_][A-Za-z0-9_.-]*=|$)")
_TEXT_SECRET = re.compile(rf"(?i)\b((?:{_KEY})\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,]+)")


def split_userinfo(url: str) -> tuple[str, str | None, str | None, str] | None:
    """(scheme://, user, password, rest after the '@') of a whole URL; None when `url` has no scheme://.

    The userinfo ends at the last '@' (see the module note) outside secret query values (which may hold
    '@' too); user/password are None when absent.
    """
    m = _SCHEME.match(url)
    if not m:
        return None
    blanked = _QUERY_SECRET.sub(lambda q: q.group(1) + " " * len(q.group(2)), url)  # same length, no '@'
    at = blanked.rfind("@", m.end())
    if at < 0:
        return m.group(0), None, None, url[m.end():]
    user, colon, password = url[m.end():at].partition(":")
    return m.group(0), user, password if colon else None, url[at + 1:]


def url_secrets(url: str) -> list[str]:
    """The secrets of a whole URL as written: its userinfo password and its secret query values."""
    parts = split_userinfo(url)
    if parts is None:
        return []
    return [s for s in [parts[2], *(q.group(2) for q in _QUERY_SECRET.finditer(url))] if s]


def _mask_one(url: str) -> str:
    """A whole URL with its userinfo password and secret query values replaced by ***."""
    parts = split_userinfo(url)
    if parts is None:
        return url
    scheme, user, password, rest = parts
    userinfo = "" if user is None else (user + (f":{MASK}" if password is not None else "") + "@")
    return scheme + userinfo + _QUERY_SECRET.sub(rf"\1{MASK}", rest)


def _mask_in_text(text: str) -> str:
    """Every URL in free text masked: from its scheme to the end of its line, userinfo up to the last '@'
    followed by a host. Not cut where another scheme starts: a password may hold '"x://' itself, so two
    URLs on one line are masked as one (too much, never too little). A URL without '@' ends at white space,
    unless it holds a secret query key, whose value may hold spaces (then the rest of the line is masked
    up to the next `&key=`)."""
    out, pos = [], 0
    for m in _SCHEME.finditer(text):
        if m.start() < pos:
            continue
        line_end = text.find("\n", m.start())
        line_end = len(text) if line_end < 0 else line_end
        region = text[m.start():line_end]
        ats = list(_HOST_AFTER_AT.finditer(region))
        if ats:
            end = ats[-1].end()
        else:
            space = re.search(r"[\s'\"<>]", region[m.end() - m.start():])
            end = len(region) if space is None else m.end() - m.start() + space.start()
        if _QUERY_SECRET.search(region):  # a secret query value may hold spaces: it runs to the line's end
            url_end = len(region)
        else:
            url_end = end + re.search(r"[\s'\"<>]|$", region[end:]).start()
        out += [text[pos:m.start()], _mask_one(region[:url_end])]
        pos = m.start() + url_end
    out.append(text[pos:])
    return "".join(out)


def mask_url(text: str, known: Iterable[str | None] = ()) -> str:
    """`text` (one URL, or a message naming some) with every password replaced by ***.

    A text that starts with a scheme is one URL (however odd its password); elsewhere URLs are found
    as the module note says, `password=...`-style pairs are masked, and the passwords of the `known`
    URLs are removed verbatim (raw, percent-decoded and percent-encoded) wherever they still appear.
    """
    text = str(text)
    for url in known:  # first: a known password must be found whole, before a URL mask cuts it
        for secret in _forms(url_secrets(url) if url else []):
            text = text.replace(secret, MASK)
    if _SCHEME.match(text):
        return _mask_one(text)
    return _TEXT_SECRET.sub(lambda m: m.group(1) + MASK, _mask_in_text(text))


def _forms(secrets: list[str]) -> list[str]:
    """The spellings of secrets in messages: as written, percent-decoded, percent-encoded, and each as a
    repr() or JSON string shows it (backslashes and quotes escaped); longest first."""
    plain = {f for s in secrets for f in (s, unquote(s), quote(s, safe=""), quote(unquote(s), safe=""))}
    forms = plain | {repr(f)[1:-1] for f in plain} | {json.dumps(f)[1:-1] for f in plain}
    return sorted((f for f in forms if len(f) >= MIN_SCRUB), key=len, reverse=True)


def mask_document(value: Any) -> Any:
    """A JSON-like document (a study file) with every URL's password and every secret key's value masked."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, dict):
        return {k: MASK if str(k).lower() in SECRET_KEYS and v is not None else mask_document(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_document(v) for v in value]
    return value
