"""Own identity and message direction.

Owns: who "we" are -- the configured ``identities`` of every account, account usernames that are
addresses, and the From of every message in a \\Sent folder -- our work domains (the registrable
domains of those addresses that are not free-mail, plus ``[crm] internal_domains``), folder roles
(from SPECIAL-USE, else well-known folder names), and the direction rules:
  sent      From is ours, or the message sits in a \\Sent folder;
  received  otherwise;
  internal  every participant is ours or on one of our work domains (not logged by default).
Must not: touch the store, the network or the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailsync.crm.addresses import canonical
from mailsync.crm.domains import is_free_mail, registrable_domain

__all__ = ["Identity", "folder_role", "ROLES"]

ROLES = ("sent", "drafts", "junk", "trash", "archive", "inbox", "other")
_SPECIAL_USE = {"\\sent": "sent", "\\drafts": "drafts", "\\junk": "junk", "\\trash": "trash",
                "\\archive": "archive", "\\all": "archive"}
_NAMES = {
    "sent": "sent", "sent items": "sent", "sent messages": "sent", "sent mail": "sent", "gesendet": "sent",
    "gesendete objekte": "sent", "gesendete elemente": "sent", "envoyés": "sent", "éléments envoyés": "sent",
    "enviados": "sent", "inviata": "sent", "posta inviata": "sent", "[gmail]/sent mail": "sent",
    "drafts": "drafts", "draft": "drafts", "entwürfe": "drafts", "brouillons": "drafts", "borradores": "drafts",
    "[gmail]/drafts": "drafts", "junk": "junk", "spam": "junk", "junk e-mail": "junk", "[gmail]/spam": "junk",
    "trash": "trash", "deleted items": "trash", "deleted messages": "trash", "papierkorb": "trash",
    "[gmail]/trash": "trash", "inbox": "inbox",
}


def folder_role(special_use: str | None, name: str) -> str:
    """sent | drafts | junk | trash | archive | inbox | other."""
    if special_use:
        for flag in special_use.lower().split():
            if flag in _SPECIAL_USE:
                return _SPECIAL_USE[flag]
    return _NAMES.get(name.strip().lower(), "other")


@dataclass(frozen=True)
class Identity:
    own: frozenset[str]  # canonical addresses that are us
    work_domains: frozenset[str]  # registrable domains

    @classmethod
    def build(cls, configured: Iterable[str], sent_from: Iterable[str],
              internal_domains: Iterable[str] = ()) -> "Identity":
        own = {a for a in (canonical(x) for x in (*configured, *sent_from)) if a}
        domains = {registrable_domain(a.rpartition("@")[2]) for a in own}
        domains = {d for d in domains if d and not is_free_mail(d)}
        domains |= {registrable_domain(d.strip().lstrip("@").lower()) for d in internal_domains if d.strip()}
        return cls(frozenset(own), frozenset(domains))

    def is_own(self, address: str) -> bool:
        return address in self.own

    def on_work_domain(self, address: str) -> bool:
        if not self.work_domains:
            return False
        return registrable_domain(address.rpartition("@")[2]) in self.work_domains

    def is_internal_address(self, address: str) -> bool:
        return address in self.own or self.on_work_domain(address)
