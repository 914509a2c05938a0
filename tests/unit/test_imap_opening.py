"""mailsync.imap.opening without sockets: a script of server lines drives the login steps (rules O1-O6)
that the blocking shell (sync) and the asyncio shell (push) both take."""

from __future__ import annotations

import base64

import pytest

from mailsync.config.model import AccountConfig
from mailsync.errors import AuthError, ConnectError, CredentialError, ProtocolError, Throttled
from mailsync.imap.opening import Opened, Receive, Send, StartTls, Token, drive, open_session
from mailsync.imap.responses import ResponseParser

GREETING = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS AUTH=PLAIN] ready\r\n"


def account(**kw) -> AccountConfig:
    kw.setdefault("tls", "implicit")
    return AccountConfig(name="a", host="h.example", port=993, username=kw.pop("username", "me@example.org"), **kw)


class Server:
    """Answers each command line the opening sends with the lines ``answer(line)`` returns (the
    tag is filled in for lines starting with TAG)."""

    def __init__(self, greeting: bytes, answer, tokens=("tok-1", "tok-2")) -> None:
        self.queue = [greeting]
        self.answer = answer
        self.sent: list[bytes] = []
        self.whats: list[str] = []
        self.tls_started = 0
        self.tokens = list(tokens)
        self.token_asks: list[str | None] = []
        self.parser = ResponseParser()
        self.events: list = []
        self.tag = b""

    def run(self, steps) -> Opened:
        return drive(steps, self.do)

    def do(self, step):
        if isinstance(step, Receive):
            while not self.events:
                self.events.extend(self.parser.feed_line(self.queue.pop(0)))
            return self.events.pop(0)
        if isinstance(step, Send):
            self.sent.append(step.data)
            self.whats.append(step.what)
            line = step.data.rstrip(b"\r\n")
            if line[:2] == b"MS" and b" " in line:
                self.tag, line = line.split(b" ", 1)
            for out in self.answer(line):
                self.queue.append(out.replace(b"TAG", self.tag) + b"\r\n")
        elif isinstance(step, StartTls):
            self.tls_started += 1
        elif isinstance(step, Token):
            self.token_asks.append(step.rejected)
            return self.tokens.pop(0)
        return None


def ok_login(line: bytes) -> list[bytes]:
    if line.startswith(b"LOGIN") or line.startswith(b"AUTHENTICATE PLAIN "):
        return [b"TAG OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS] logged in"]
    if line == b"CAPABILITY":
        return [b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN", b"TAG OK done"]
    if line == b"STARTTLS":
        return [b"TAG OK begin TLS"]
    return [b"TAG BAD unexpected"]


def test_an_ascii_password_logs_in_with_login_quoted_and_the_transcript_hides_it():
    server = Server(GREETING, ok_login)
    opened = server.run(open_session(account(), 'pa"ss\\word'))
    assert server.sent[0].split(b" ", 1)[1] == b'LOGIN "me@example.org" "pa\\"ss\\\\word"\r\n'
    assert server.whats == ["LOGIN"]  # never the password
    assert opened.capabilities == {"IMAP4REV1", "IDLE", "UIDPLUS"}  # O6: from the login's OK code
    assert opened.mechanism is None


def test_a_non_ascii_password_goes_by_authenticate_plain_with_sasl_ir():
    server = Server(GREETING, ok_login)
    server.run(open_session(account(username="jürgen"), "pässwörd"))
    cmd = server.sent[0].split(b" ", 1)[1].rstrip(b"\r\n")
    assert cmd.startswith(b"AUTHENTICATE PLAIN ")
    assert base64.b64decode(cmd.split()[-1]) == "\0jürgen\0pässwörd".encode()
    assert server.whats == ["AUTHENTICATE"]


def test_a_non_ascii_password_without_authenticate_plain_is_refused_naming_it():
    server = Server(b"* OK [CAPABILITY IMAP4rev1] ready\r\n", ok_login)
    with pytest.raises(AuthError, match="AUTHENTICATE PLAIN"):
        server.run(open_session(account(), "pässwörd"))
    assert server.sent == []


def test_a_control_character_in_the_password_is_refused_before_anything_is_sent():
    server = Server(GREETING, ok_login)
    with pytest.raises(CredentialError, match="control character"):
        server.run(open_session(account(), "p\r\nX DELETE INBOX"))
    assert server.sent == []


def test_logindisabled_uses_authenticate_plain_without_sasl_ir_through_a_continuation():
    def answer(line):
        if line == b"AUTHENTICATE PLAIN":
            return [b"+ "]
        if line == base64.b64encode(b"\0me@example.org\0secret"):
            return [b"TAG OK logged in"]
        return ok_login(line)

    server = Server(b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] hi\r\n", answer)
    opened = server.run(open_session(account(), "secret"))
    assert server.whats == ["AUTHENTICATE", "AUTHENTICATE (continued)", "CAPABILITY"]
    assert "STARTTLS" in opened.capabilities  # O6: no IMAP4 in the OK code, so asked again


def test_starttls_comes_first_and_what_was_announced_before_it_is_forgotten():
    server = Server(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n", ok_login)
    opened = server.run(open_session(account(tls="starttls"), "secret"))
    assert [s.split(b" ", 1)[1].split()[0] for s in server.sent] == [b"STARTTLS", b"CAPABILITY", b"LOGIN"]
    assert server.tls_started == 1
    assert opened.capabilities == {"IMAP4REV1", "IDLE", "UIDPLUS"}


@pytest.mark.parametrize("greeting, error, text", [
    (b"* OK [CAPABILITY IMAP4rev1] no tls here\r\n", ConnectError, "does not offer STARTTLS"),
    (b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome\r\n", ConnectError, "PREAUTH"),
])
def test_starttls_that_cannot_happen_is_refused(greeting, error, text):
    server = Server(greeting, ok_login)
    with pytest.raises(error, match=text):
        server.run(open_session(account(tls="starttls"), "secret"))
    assert not any(b"LOGIN" in s for s in server.sent)


@pytest.mark.parametrize("greeting, error, text", [
    (b"* BYE going down\r\n", ConnectError, "refused the connection: going down"),
    # a connection limit is a wait, not a broken server (mailsync.imap.throttle)
    (b"* BYE too many connections\r\n", Throttled, "refused: too many connections while connecting"),
    (b"+ go ahead\r\n", ProtocolError, "no IMAP greeting"),
])
def test_a_greeting_that_is_not_ok_is_refused(greeting, error, text):
    with pytest.raises(error, match=text):
        Server(greeting, ok_login).run(open_session(account(), "secret"))


def test_preauth_needs_no_login():
    server = Server(b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] you are in\r\n", ok_login)
    opened = server.run(open_session(account(tls="implicit"), "secret"))
    assert server.sent == [] and opened.capabilities == {"IMAP4REV1", "IDLE"}


def test_a_refused_password_names_the_user_and_the_fix():
    server = Server(GREETING, lambda line: [b"TAG NO [AUTHENTICATIONFAILED] Authentication failed."])
    with pytest.raises(AuthError, match="refused the login of 'me@example.org'") as info:
        server.run(open_session(account(), "wrong"))
    assert "wrong" not in str(info.value) and "password source" in info.value.hint


def test_a_login_refused_for_too_many_connections_is_a_wait_not_a_bad_password():
    """Gmail answers a login over its 15 connections with NO [ALERT] Too many simultaneous
    connections: the credentials are fine, so no AuthError (which would mark them failing)."""
    server = Server(GREETING, lambda line: [b"TAG NO [ALERT] Too many simultaneous connections. (Failure)"])
    with pytest.raises(Throttled, match="too many connections while logging in") as info:
        server.run(open_session(account(), "secret"))
    assert not isinstance(info.value, AuthError) and info.value.kind == "connections"


def _oauth_answer(accept: str):
    state = {}

    def answer(line):
        if line.startswith(b"AUTHENTICATE "):
            state["mech"] = line.split()[1]
            return [b"+ "]
        if line == b"AQ==" or line == b"":  # the client's abort after the error challenge
            return [b"TAG NO [AUTHENTICATIONFAILED] invalid token"]
        sent = base64.b64decode(line)
        if f"auth=Bearer {accept}".encode() in sent:
            return [b"TAG OK [CAPABILITY IMAP4rev1 IDLE] welcome"]
        challenge = base64.b64encode(b'{"status":"invalid_token","scope":"imap"}')
        return [b"+ " + challenge]
    return answer


def test_oauth2_prefers_oauthbearer_and_refreshes_a_refused_token_once():
    server = Server(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER] hi\r\n", _oauth_answer("tok-2"))
    opened = server.run(open_session(account(auth="oauth2"), None, oauth2=True))
    assert opened.mechanism == "OAUTHBEARER"
    assert server.token_asks == [None, "tok-1"]  # the refused token is named when asking for a new one
    assert all("tok" not in w for w in server.whats)


def test_oauth2_refused_after_the_refresh_says_why_without_the_token():
    server = Server(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi\r\n", _oauth_answer("never"))
    with pytest.raises(AuthError, match=r"even after a refresh.*status invalid_token") as info:
        server.run(open_session(account(auth="oauth2"), None, oauth2=True))
    assert "tok-" not in str(info.value) and "auth login a" in info.value.hint


def test_oauth2_without_a_bearer_mechanism_is_refused():
    with pytest.raises(AuthError, match="neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2"):
        Server(GREETING, ok_login).run(open_session(account(auth="oauth2"), None, oauth2=True))
