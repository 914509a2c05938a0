"""The CRM layer: contacts, companies and activities derived from synced mail, and their delivery.

Owns, module by module (each says what it must not touch in its own header):
  pure (no store, no I/O, no clock):
    addresses   canonical addresses, syntax (email-validator, no DNS), typo suggestions, names
    domains     registrable domains (public suffix list, offline) and free-mail domains
    junk        role / no-reply addresses, bulk mail, blocklist entries
    headers     raw message -> MessageFacts (stdlib email, lenient)
    dsn         RFC 3464 delivery-status reports
    autoreply   RFC 3834 auto-reply detection
    unsubscribe List-Unsubscribe targets and opt-out / opt-in requests
    jwz         JWZ threading -> thread ids
    identity    own addresses, work domains, message direction
    engagement  counts, reply rate and latency, deliverability, consent, decayed score
    records     the record shapes (field lists the mapping checks against)
    extract     THE extractor: messages (facts + flags + folder roles) in, records out
    mapping     per-sink field mapping and transforms
    settings    the [crm] table and the account keys it reads, validated
  store-facing:
    models      SQLAlchemy tables (crm_*), migration 0002_crm
    pipeline    the order of a run and its one transaction: sources, facts, threads, derive (a module
                each, with queries, record_store, enqueue, erasure and parsing beside them)
    outbox      the delivery worker: claims, retries with backoff, dead letters
    sinks       webhook (HMAC-signed HTTP POST) and jsonl transports

Must not: change what the sync engine stores (it only reads accounts, folders, placements, bodies).
"""
