"""Junk-contact rules: addresses and messages that must never make a contact.

Owns: role and no-reply addresses (noreply, mailer-daemon, postmaster, notifications@ ...), bulk mail
(List-Id, List-Unsubscribe, Precedence bulk/list/junk, Auto-Submitted other than "no"), and
blocklist entries (``someone@example.com`` or ``@example.com``, which also covers subdomains).
The max-recipients rule lives in extract.py, which knows the setting.
Must not: touch the store, the network or the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["Blocklist", "is_bulk", "is_role_address", "ROLE_LOCAL_PARTS"]

# Local parts that name a function or a machine, never a person (RFC 2142 and common practice).
# info@, sales@ and support@ are left out on purpose: small companies answer from them.
ROLE_LOCAL_PARTS = frozenset({
    "noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "do_not_reply", "dontreply",
    "mailer-daemon", "mailerdaemon", "postmaster", "hostmaster", "webmaster", "abuse", "daemon",
    "notification", "notifications", "notify", "alert", "alerts", "bounce", "bounces", "newsletter",
    "newsletters", "unsubscribe", "listserv", "majordomo", "mailman", "root", "nobody", "devnull",
    "automailer", "auto-reply", "autoreply",
})
_ROLE_PREFIX = re.compile(r"^(no-?reply|do-?not-?reply|bounces?|mailer-daemon|notifications?)([+._-]|$)")


def is_role_address(address: str, extra: Iterable[str] = ()) -> bool:
    local = address.rpartition("@")[0].lower()
    base = local.split("+", 1)[0]
    if base in ROLE_LOCAL_PARTS or local in ROLE_LOCAL_PARTS or base in extra:
        return True
    return bool(_ROLE_PREFIX.match(base))


def is_bulk(*, list_id: str | None, list_unsubscribe: bool, precedence: str | None,
            auto_submitted: str | None) -> bool:
    if list_id or list_unsubscribe:
        return True
    if precedence in ("bulk", "list", "junk"):
        return True
    return auto_submitted is not None and auto_submitted != "no"


class Blocklist:
    """Addresses and ``@domain`` entries; a domain entry covers its subdomains too."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        from mailsync.crm.addresses import canonical

        self.addresses: set[str] = set()
        self.domains: set[str] = set()
        for e in entries:
            e = e.strip().lower()
            if e.startswith("@"):
                self.domains.add(e[1:].rstrip("."))
            else:
                c = canonical(e)
                if c:
                    self.addresses.add(c)

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)

    def blocks(self, address: str) -> bool:
        if address in self.addresses:
            return True
        if not self.domains:
            return False
        domain = address.rpartition("@")[2]
        while True:
            if domain in self.domains:
                return True
            if "." not in domain:
                return False
            domain = domain.split(".", 1)[1]
