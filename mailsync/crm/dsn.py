"""RFC 3464 delivery-status notifications: a bounce report, parsed per recipient.

Owns: finding the ``message/delivery-status`` part of a ``multipart/report`` message, reading its
per-message and per-recipient field blocks (Final-Recipient, Action, Status, Diagnostic-Code), the
hard/soft classification (status class 5 = hard, 4 = soft; without a status, Action failed = hard,
delayed = soft), and the Message-ID of the returned message (``Original-Message-ID``, else the
Message-ID of the ``message/rfc822`` or ``text/rfc822-headers`` part) that links the bounce back.
Lenient: blocks that the email package cannot split are re-read line by line; never raises.
Must not: touch the store, the network or the clock.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass

__all__ = ["BounceRecipient", "DeliveryReport", "is_delivery_report", "parse_delivery_report"]


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
    if not content_type:
        return False
    ct = content_type.lower()
    return "multipart/report" in ct and "delivery-status" in ct


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
    if isinstance(payload, bytes):
        payload = payload.decode("ascii", "replace")
    if isinstance(payload, str):
        return _fields_from_text(payload)
    return []


def _addr_of(value: str) -> str | None:
    from mailsync.crm.addresses import canonical

    kind, sep, addr = value.partition(";")
    return canonical(addr if sep else kind)


def _classify(action: str, status: str) -> str | None:
    if action in ("delivered", "relayed", "expanded"):
        return None
    if status:
        return {"5": "hard", "4": "soft"}.get(status[0])
    return {"failed": "hard", "delayed": "soft"}.get(action)


def parse_delivery_report(raw: bytes) -> DeliveryReport | None:
    """The report of a ``multipart/report; report-type=delivery-status`` message, else None."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception:  # pragma: no cover - the compat32 parser is lenient; this is the last net
        return None
    if not is_delivery_report(str(msg.get("Content-Type", ""))):
        return None
    blocks: list[dict[str, str]] = []
    original: str | None = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status") and not blocks:
            blocks = _blocks_of(part)
        elif ctype == "message/rfc822" and original is None:
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                found = _MSGID.search(str(inner[0].get("Message-ID", "")))
                original = found.group(0) if found else None
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers") and original is None:
            data = part.get_payload(decode=True) or b""
            found = re.search(rb"(?im)^message-id:[ \t]*(<[^<>\s]+>)", data)
            original = found.group(1).decode("ascii", "replace") if found else None
    if not blocks:
        return None
    per_message, per_recipient = blocks[0], blocks[1:]
    if "final-recipient" in per_message or "original-recipient" in per_message:
        per_message, per_recipient = {}, blocks  # a report without per-message fields
    stated = _MSGID.search(per_message.get("original-message-id", "") or per_message.get("x-original-message-id", ""))
    if stated:
        original = stated.group(0)
    recipients = []
    seen = set()
    for fields in per_recipient:
        addr = _addr_of(fields.get("final-recipient") or fields.get("original-recipient") or "")
        if not addr or addr in seen:
            continue
        seen.add(addr)
        action = fields.get("action", "").split()[0].lower() if fields.get("action") else ""
        m = _STATUS.search(fields.get("status", ""))
        status = m.group(0) if m else ""
        recipients.append(BounceRecipient(addr, action, status, _classify(action, status),
                                          fields.get("diagnostic-code", "")[:500]))
    return DeliveryReport(original, tuple(recipients))
