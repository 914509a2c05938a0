"""Email addresses: the canonical form contacts are keyed by, syntax checks, typo suggestions, names.

Owns: canonicalisation (lowercase; dots and +tags ignored for gmail.com/googlemail.com only, and
googlemail.com folded into gmail.com), the syntax check (email-validator with
``check_deliverability=False``: never DNS, never the network), likely typos of common mail domains
(flagged with a suggestion, never rewritten), and splitting a display name into first and last.
Must not: touch the store, the network, the clock or any configuration.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = [
    "canonical",
    "check_syntax",
    "domain_of",
    "is_typo_domain",
    "split_name",
    "typo_suggestion",
]

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

# Popular mail domains a typo is measured against. A domain on this list (or on the free-mail list)
# is never itself a typo.
COMMON_DOMAINS = (
    "gmail.com", "googlemail.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "hotmail.de",
    "outlook.com", "outlook.de", "live.com", "msn.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr",
    "yahoo.de", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "gmx.de", "gmx.net",
    "gmx.at", "web.de", "t-online.de", "freenet.de", "protonmail.com", "proton.me", "mail.ru",
    "yandex.ru", "qq.com", "163.com", "126.com", "orange.fr", "free.fr", "laposte.net",
    "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "libero.it", "naver.com",
)
# Typos seen often enough to name outright (distance alone would also find most of them).
KNOWN_TYPOS = {
    "gmal.com": "gmail.com", "gmial.com": "gmail.com", "gamil.com": "gmail.com", "gnail.com": "gmail.com",
    "gmaill.com": "gmail.com", "gmail.co": "gmail.com", "gmail.cm": "gmail.com", "gmail.con": "gmail.com",
    "gmai.com": "gmail.com", "hotmial.com": "hotmail.com", "hotmal.com": "hotmail.com",
    "hotmai.com": "hotmail.com", "hotmil.com": "hotmail.com", "hotmail.con": "hotmail.com",
    "yaho.com": "yahoo.com", "yahooo.com": "yahoo.com", "yahoo.con": "yahoo.com", "outlok.com": "outlook.com",
    "outloo.com": "outlook.com", "iclod.com": "icloud.com", "icloud.co": "icloud.com",
}


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def canonical(address: str) -> str | None:
    """The key a contact is stored under, or None when ``address`` is not a usable address.

    ``John.Doe+crm@GoogleMail.com`` -> ``johndoe@gmail.com``; ``Jane.Doe+x@Example.com`` ->
    ``jane.doe+x@example.com`` (tags and dots mean something elsewhere)."""
    a = address.strip().strip("<>").strip()
    if a.lower().startswith("mailto:"):
        a = a[7:]
    local, at, domain = a.rpartition("@")
    if not at or not local or not domain:
        return None
    domain = domain.strip().rstrip(".").lower()
    local = local.strip().lower()
    if not domain or not local or any(c.isspace() for c in local + domain) or "@" in domain:
        return None
    if "." not in domain and not domain.startswith("["):
        return None  # "user@localhost"-style: not an address a contact can have
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
        if not local:
            return None
    return f"{local}@{domain}"


@functools.lru_cache(maxsize=65536)
def check_syntax(address: str) -> str | None:
    """None when the address is syntactically valid, else the reason (email-validator's words)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def _distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Damerau-Levenshtein with adjacent transpositions)."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


@functools.lru_cache(maxsize=16384)
def _typo_domain(domain: str) -> str | None:
    from mailsync.crm.domains import is_free_mail

    if domain in KNOWN_TYPOS:
        return KNOWN_TYPOS[domain]
    if domain in COMMON_DOMAINS or is_free_mail(domain) or len(domain) < 7:
        return None
    best = None
    for common in COMMON_DOMAINS:
        if abs(len(common) - len(domain)) <= 1 and _distance(domain, common) == 1:
            if best is None or common < best:
                best = common
    return best


def is_typo_domain(domain: str) -> bool:
    """gmal.com, hotmial.com ...: a domain that looks like a typo of a common mail domain."""
    return _typo_domain(domain.lower()) is not None


def typo_suggestion(address: str) -> str | None:
    """``jana@gmal.com`` -> ``jana@gmail.com``; None when the domain does not look like a typo."""
    local, _, domain = address.rpartition("@")
    fixed = _typo_domain(domain.lower())
    return f"{local}@{fixed}" if fixed else None


_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


_AFFILIATION = re.compile(r"\s+(\||-|–|—|/|@|via)\s+.*$", re.IGNORECASE)


def split_name(display: str) -> tuple[str, str]:
    """(first, last) of a display name: "Smith, Karen" -> (Karen, Smith); "山田 太郎" -> (太郎, 山田);
    "李娜" -> (娜, 李); "Anna Maria Schmidt" -> (Anna Maria, Schmidt); "Dr. Hans van der Berg" ->
    (Hans, van der Berg); "John Smith Jr." -> (John, Smith); "Karen Smith (Acme)" and "Karen Smith |
    Acme" -> (Karen, Smith); "" or an address -> ("", "").

    Western names go through nameparser (titles, suffixes, particles such as van der / de la,
    nicknames in parentheses, "Last, First" order); the first name keeps the middle names."""
    name = unicodedata.normalize("NFC", display).strip().strip("'\"").strip()
    if not name or "@" in name:
        return "", ""
    parts = name.split()
    if _CJK.search(name):  # family name first
        if "," in name:
            last, _, first = name.partition(",")
            return first.strip(), last.strip()
        if len(parts) >= 2:
            return " ".join(parts[1:]), parts[0]
        if 2 <= len(name) <= 4:
            return name[1:], name[0]
        return name, ""
    name = _AFFILIATION.sub("", name).strip() or name
    return _western(name)


@functools.lru_cache(maxsize=16384)
def _western(name: str) -> tuple[str, str]:
    from nameparser import HumanName

    h = HumanName(name)
    first = " ".join(x for x in (h.first, h.middle) if x)
    last = h.last
    if not first and not last:  # only a title or a suffix ("Dr.")
        return name, ""
    if not first:
        return last, ""
    return first, last
