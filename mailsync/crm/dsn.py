"""RFC 3464 delivery-status notifications: a bounce report, parsed per recipient.

Owns: finding the ``message/delivery-status`` part of a ``multipart/report`` message, reading its
per-message and per-recipient field blocks (Original-Recipient, Final-Recipient, Action, Status,
Diagnostic-Code), the hard/soft classification, and the Message-ID of the returned message
(``Original-Message-ID``, else the Message-ID of the ``message/rfc822`` or ``text/rfc822-headers``
part) that links the bounce back.
The recipient is the Original-Recipient when it is a usable address (it is the address we wrote
to; the Final-Recipient may be an alias it was rewritten to, ``system;<>``, or an X.400 name),
else the Final-Recipient. Hard or soft: Action failed (or "failure") is hard whatever the status
class -- the server gave up, even on a 4.x.x -- delayed is soft; without an Action, status class
5 is hard and 4 soft.
Lenient: the delivery-status part is looked for in any message (some MTAs send it in a
multipart/mixed, or a multipart/report without report-type), blocks the email package cannot split
are re-read line by line, quoted-printable parts decoded, and only syntactically valid recipients
kept; never raises.
Must not: touch the store, the network or the clock.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass

__all__ = ["BounceRecipient", "DeliveryReport", "is_delivery_report", "is_report", "parse_delivery_report"]


@dataclass(frozen=True, slots=True)
class BounceRecipient:
    address: str  # canonical
    action: str  # failed | delayed | delivered | relayed | expanded | "" when missing
    status: str  # "5.1.1" or ""
    bounce: str | None  # hard | soft | None (delivered, relayed ...)
    diagnostic: str


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    original_message_id: str | None
    recipients: tuple[BounceRecipient, ...]


_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_MSGID = re.compile(r"<[^<>\s]+>")


def is_delivery_report(content_type: str | None) -> bool:
    """The Content-Type announces a report (a delivery-status one, or one without report-type)."""
    if not content_type:
        return False
    ct = content_type.lower()
    return "multipart/report" in ct and ("delivery-status" in ct or "report-type" not in ct)


def is_report(content_type: str | None) -> bool:
    """Any ``multipart/report``: delivery status, feedback (RFC 5965), disposition, DMARC/TLS ..."""
    return bool(content_type) and "multipart/report" in content_type.lower()


def _fields_from_text(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
                continue
            name, colon, value = line.partition(":")
            if colon and name.strip():
                last = name.strip().lower()
                fields.setdefault(last, value.strip())
        if fields:
            blocks.append(fields)
    return blocks


def _blocks_of(part) -> list[dict[str, str]]:
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = []
        for sub in payload:
            fields = {}
            for name, value in sub.raw_items():
                fields.setdefault(name.lower(), re.sub(r"\s+", " ", str(value)).strip())
            blocks.append(fields)
        if blocks:
            return blocks
    if str(part.get("Content-Transfer-Encoding", "")).strip().lower() in ("quoted-printable", "base64"):
        payload = part.get_payload(decode=True) or b""
    if isinstance(payload, bytes):
        payload = payload.decode("ascii", "replace")
    if isinstance(payload, str):
        return _fields_from_text(payload)
    return []


def _addr_of(value: str) -> str | None:
    from mailsync.crm.addresses import canonical, check_syntax

    kind, sep, addr = value.partition(";")
    if sep and kind.strip().lower() not in ("rfc822", "utf-8", ""):
        return None  # x400, unknown: not an address we wrote to
    addr = (addr if sep else kind).strip().strip("<>").strip()
    if not addr or "@" not in addr or check_syntax(addr) is not None:
        return None
    return canonical(addr)


def _action(value: str) -> str:
    word = value.split()[0].lower() if value.strip() else ""
    return "failed" if word in ("failed", "failure", "fail") else word


def _classify(action: str, status: str) -> str | None:
    if action in ("delivered", "relayed", "expanded"):
        return None
    if action == "failed":
        return "hard"  # the server gave up, whatever the status class says
    if action == "delayed":
        return "soft"
    if status:
        return {"5": "hard", "4": "soft"}.get(status[0])
    return None


def parse_delivery_report(raw: bytes) -> DeliveryReport | None:
    """The report of a message holding a ``message/delivery-status`` part, else None."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception:  # pragma: no cover - the compat32 parser is lenient; this is the last net
        return None
    return report_of(msg)


def returned_message_id(msg) -> str | None:
    """The Message-ID of the returned message: its ``message/rfc822`` or ``text/rfc822-headers`` part."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                found = _MSGID.search(str(inner[0].get("Message-ID", "")))
                if found:
                    return found.group(0)
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            data = part.get_payload(decode=True) or b""
            found = re.search(rb"(?im)^message-id:[ \t]*(<[^<>\s]+>)", data)
            if found:
                return found.group(1).decode("ascii", "replace")
    return None


def report_of(msg) -> DeliveryReport | None:
    """The delivery report of a parsed (compat32) message, else None."""
    blocks: list[dict[str, str]] = []
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            blocks = _blocks_of(part)
            break
    if not blocks:
        return None
    original = returned_message_id(msg)
    per_message, per_recipient = blocks[0], blocks[1:]
    if "final-recipient" in per_message or "original-recipient" in per_message:
        per_message, per_recipient = {}, blocks  # a report without per-message fields
    stated = _MSGID.search(per_message.get("original-message-id", "") or per_message.get("x-original-message-id", ""))
    if stated:
        original = stated.group(0)
    recipients = []
    seen = set()
    for fields in per_recipient:
        addr = _addr_of(fields.get("original-recipient", "")) or _addr_of(fields.get("final-recipient", ""))
        if not addr or addr in seen:
            continue
        seen.add(addr)
        action = _action(fields.get("action", ""))
        m = _STATUS.search(fields.get("status", ""))
        status = m.group(0) if m else ""
        recipients.append(BounceRecipient(addr, action, status, _classify(action, status),
                                          fields.get("diagnostic-code", "")[:500]))
    return DeliveryReport(original, tuple(recipients))
