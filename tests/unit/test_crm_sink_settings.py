"""The CRM sinks' settings (hubspot, salesforce, bottlecrm) as the loader checks them, their default field mapping,
and the pure parts of their transports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailsync.config.loader import config_from_mapping
from mailsync.crm import bottlecrm
from mailsync.crm.hubspot import email_properties, epoch_ms, properties
from mailsync.crm.mapping import apply_mapping
from mailsync.crm.outbox import envelope
from mailsync.crm.salesforce import marker, task_fields
from mailsync.crm.settings import CrmSettings
from mailsync.errors import ConfigError


def settings(crm: dict, tmp_path: Path) -> CrmSettings:
    doc = {"account": [{"name": "w", "host": "h.example", "username": "me@example.com", "password": "x"}], "crm": crm}
    return CrmSettings.from_config(config_from_mapping(doc, path=tmp_path / "c.toml"))


def test_hubspot_defaults(tmp_path):
    sink = settings({"sink": [{"name": "hs", "type": "hubspot", "token": "env:HS"}]}, tmp_path).sink("hs")
    assert (sink.url, sink.rate_limit, sink.batch_size, sink.secret.kind, sink.crm) == \
        ("https://api.hubapi.com", 4.0, 1, "env", True)
    contact = {"id": "c_1", "address": "jane@acme.example", "email": "Jane@Acme.example", "first_name": "Jane",
               "last_name": None, "display_name": "Jane", "score": 2.0}
    row = {"op": "upsert", "record_type": "contact", "record_id": "c_1", "idempotency_key": "k",
           "payload": json.dumps(contact)}
    env = envelope(row, sink)
    assert env["data"] == {"firstname": "Jane", "lastname": None}  # only the CRM's properties, not the record
    assert env["record"] == contact
    assert properties(env["data"]) == {"firstname": "Jane"}  # an empty value never blanks HubSpot's


def test_salesforce_settings_and_mapping_over_the_defaults(tmp_path):
    sink = settings({"sink": [{"name": "sf", "type": "salesforce", "token": "cmd:sf-token",
                               "url": "https://acme.my.salesforce.com/", "api_version": 60,
                               "external_id_field": "Mailsync_Id__c",
                               "fields": {"contact": {"LastName": False, "Title": {"from": "display_name",
                                                                                   "transform": "upper"}}}}]},
                    tmp_path).sink("sf")
    assert (sink.url, sink.api_version, sink.external_id_field, sink.rate_limit) == \
        ("https://acme.my.salesforce.com", "60.0", "Mailsync_Id__c", None)
    rec = {"first_name": "Jane", "last_name": "Doe", "display_name": "Jane Doe", "address": "jane@acme.example"}
    assert apply_mapping(rec, sink.fields["contact"], passthrough=False) == {"FirstName": "Jane", "Title": "JANE DOE"}
    activity = {"timestamp": "2024-03-05T14:03:22Z", "subject": "Quote", "body_preview": None}
    assert apply_mapping(activity, sink.fields["activity"], passthrough=False) == \
        {"Subject": "Quote", "Description": None, "ActivityDate": "2024-03-05"}


@pytest.mark.parametrize(("sink", "in_message", "in_hint"), [
    ({"type": "hubspot"}, "'token'", "env:HUBSPOT_TOKEN"),
    ({"type": "salesforce", "token": "env:T"}, "'url'", "salesforce.com"),
    ({"type": "bottlecrm", "token": "env:T"}, "'url'", "https://crm.example.com"),
    ({"type": "bottlecrm", "url": "https://crm.example.com"}, "personal access token", "env:BOTTLECRM_TOKEN"),
    ({"type": "bottlecrm", "token": "env:T", "url": "http://crm.example.com"}, "unencrypted", "https://"),
    ({"type": "bottlecrm", "token": "env:T", "url": "https://c.example", "external_id_field": "X__c"},
     "external_id_field", "remove external_id_field"),
    ({"type": "hubspot", "token": "env:T", "url": "http://hubspot.example.com"}, "unencrypted", "https://"),
    ({"type": "hubspot", "token": "env:T", "secret": "env:S"}, "secret", "token"),
    ({"type": "hubspot", "token": "env:T", "batch_size": 10}, "batch_size", "remove batch_size"),
    ({"type": "hubspot", "token": "env:T", "api_version": "59.0"}, "api_version", "remove api_version"),
    ({"type": "salesforce", "token": "env:T", "url": "https://x.my.salesforce.com", "api_version": "v59"},
     "api_version", '"59.0"'),
    ({"type": "salesforce", "token": "env:T", "url": "https://x.my.salesforce.com", "external_id_field": "Id; DROP"},
     "external_id_field", "Mailsync_Id__c"),
    ({"type": "webhook", "url": "https://c.example/h", "secret": "env:S", "token": "env:T"}, "token", "secret"),
    ({"type": "hubspot", "token": "env:T", "fields": {"contact": {"firstname": "first_nme"}}},
     "fields.contact.firstname", '"first_name"'),
])
def test_errors_name_key_value_and_fix(tmp_path, sink, in_message, in_hint):
    with pytest.raises(ConfigError) as info:
        settings({"sink": [{"name": "x", **sink}]}, tmp_path)
    assert in_message in info.value.message, info.value.message
    assert in_hint in (info.value.hint or ""), info.value.hint


def test_a_literal_token_is_refused_in_a_readable_file_and_never_shown(tmp_path):
    doc = {"crm": {"sink": [{"name": "x", "type": "hubspot", "token": "pat-na1-0123"}]}}
    with pytest.raises(ConfigError) as info:
        config_from_mapping(doc, path=tmp_path / "c.toml", mode=0o644)
    assert "pat-na1-0123" not in str(info.value) + (info.value.hint or "")
    config_from_mapping(doc, path=tmp_path / "c.toml", mode=0o600)


def test_hubspot_email_properties():
    rec = {"direction": "in", "kind": "bounce", "timestamp": "2024-03-05T14:03:22Z"}
    assert email_properties(rec, {"hs_email_subject": "Undelivered", "hs_email_text": None}) == {
        "hs_email_subject": "Undelivered", "hs_timestamp": "2024-03-05T14:03:22Z",
        "hs_email_direction": "INCOMING_EMAIL", "hs_email_status": "BOUNCED"}
    out = email_properties({"direction": "out", "kind": "email_sent", "timestamp": "2024-03-05T14:03:22Z"}, {})
    assert (out["hs_email_direction"], out["hs_email_status"]) == ("EMAIL", "SENT")
    assert epoch_ms("2024-03-05T14:03:22Z") == "1709647402000" and epoch_ms("1709647402000") == "1709647402000"


def test_salesforce_task_fields_carry_the_marker():
    rec = {"id": "a_123", "kind": "email_received"}
    t = task_fields(rec, {"Subject": None, "Description": "hello", "ActivityDate": "2024-03-05"})
    assert t == {"Subject": "Email (email received)", "Description": "hello\n\n" + marker("a_123"),
                 "ActivityDate": "2024-03-05", "TaskSubtype": "Email", "Status": "Completed"}
    assert task_fields(rec, {"Subject": "x" * 300})["Subject"] == "x" * 255


def test_the_sample_configs_crm_section_loads_when_uncommented(tmp_path):
    import re

    from mailsync.config.sample import SAMPLE_CONFIG

    head, _, tail = SAMPLE_CONFIG.partition("# CRM records")
    block = tail.partition("# A channel:")[0]  # the sample's next section
    toml = "\n".join(re.sub(r"^# ", "", line) for line in block.splitlines() if re.match(r"^# (\[|\w+ = )", line))
    path = tmp_path / "c.toml"
    path.write_text(head + toml + "\n")
    path.chmod(0o600)
    from mailsync.config.loader import load_config

    s = CrmSettings.from_config(load_config(path))
    assert [(x.name, x.type) for x in s.sinks] == [("hook", "webhook"), ("hubspot", "hubspot"),
                                                   ("salesforce", "salesforce"), ("bottlecrm", "bottlecrm")]
    hubspot, salesforce = s.sink("hubspot"), s.sink("salesforce")
    assert hubspot.rate_limit == 4.0 and [r.target for r in hubspot.fields["contact"]][-1] == "jobtitle"
    assert salesforce.secret.kind == "cmd" and salesforce.external_id_field == "Mailsync_Id__c"


def test_bottlecrm_settings_and_default_mapping(tmp_path):
    sink = settings({"sink": [{"name": "b", "type": "bottlecrm", "token": "env:B", "url": "https://crm.example.com/",
                               "fields": {"contact": {"title": "display_name", "last_name": False}}}]},
                    tmp_path).sink("b")
    assert (sink.url, sink.rate_limit, sink.crm, sink.secret.kind) == ("https://crm.example.com", None, True, "env")
    contact = {"id": "c_1", "address": "jane@acme.example", "email": "Jane@Acme.example", "first_name": "Jane",
               "last_name": "Doe", "display_name": "Jane Doe (Acme)", "score": 2.0}
    row = {"op": "upsert", "record_type": "contact", "record_id": "c_1", "idempotency_key": "k",
           "payload": json.dumps(contact)}
    assert envelope(row, sink)["data"] == {"first_name": "Jane", "title": "Jane Doe (Acme)"}  # only mapped fields


def test_bottlecrm_contact_and_interaction_fields():
    rec = {"id": "c_1", "address": "j.doe@acme.example"}
    assert bottlecrm.contact_fields(rec, {"first_name": None, "last_name": ""}, new=False) == {
        "email": "j.doe@acme.example"}  # an update never blanks or invents a name
    assert bottlecrm.contact_fields(rec, {"first_name": None, "email": "other@x.example"}, new=True) == {
        "email": "j.doe@acme.example", "first_name": "j.doe", "last_name": "-"}  # the address is the key
    act = {"id": "a_9", "kind": "auto_reply", "direction": "in", "timestamp": "2024-03-05T14:03:22Z"}
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    mapped = {"subject": None, "body": None, "occurred_at": "2024-03-05T14:03:22Z"}
    assert bottlecrm.interaction_fields(act, mapped, now) == {
        "kind": "email", "direction": "inbound", "subject": "Email (auto reply)", "body": "[mailsync a_9]",
        "occurred_at": "2024-03-05T14:03:22Z"}
    future = bottlecrm.interaction_fields(act, {"occurred_at": "2038-01-19T03:14:08Z"}, now)  # BottleCRM refuses
    assert future["occurred_at"] == "2027-01-15T08:00:00Z"
    assert bottlecrm.interaction_fields(act, {"occurred_at": "15.01.2038"}, now)["occurred_at"] == "15.01.2038"
    out = bottlecrm.interaction_fields({**act, "direction": "out"}, {"subject": "s" * 300, "body": "b" * 20_000}, now)
    assert out["direction"] == "outbound" and len(out["subject"]) == 200 and len(out["body"]) == 10_000
    assert out["body"].endswith("\n\n" + bottlecrm.marker("a_9")) and out["occurred_at"] == act["timestamp"]
    assert bottlecrm.website("acme.example") == "https://acme.example"
