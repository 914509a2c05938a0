"""The throwaway Dovecot's config templates: one for Dovecot 2.3, one for 2.4 (whose config syntax
changed: ``dovecot_config_version``, renamed settings, named passdb/userdb blocks, ``%{user}``).

Owns: the templates' text; mailsync.testing.dovecot fills them in and picks one by ``dovecot --version``.
Must not: import anything (it runs under a bare ``python3``, like mailsync.testing.dovecot).

@NAME@ marks a value DovecotServer fills in; every other character is Dovecot syntax. Edit them here,
then run `scripts/dovecot template --write` to refresh the copies in fixtures/dovecot/ (a test checks
that they agree).
"""

# The end of both versions' files: the same in 2.3's syntax and 2.4's.
_SERVICES_TAIL = """service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
# No per-IP auth penalty: a test's deliberate bad login must not slow the next tests.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
@RUN_AS_CONF@
# --- Advertised capabilities (empty = Dovecot's default list).
@CAPABILITY_CONF@
# --- Extra settings given by the caller.
@EXTRA_CONF@
"""

CONF_TEMPLATE = r"""# mailsync throwaway Dovecot 2.3 configuration.
# Generated from CONF_TEMPLATE in mailsync/testing/dovecot_conf.py; an upper-case word between two
# at-signs is a value that DovecotServer fills in. Edit the module, not this file, then run:
#   scripts/dovecot template --write

# --- This instance owns everything under its root; nothing of the system's Dovecot is used.
base_dir = @BASE_DIR@
state_dir = @ROOT@/state
instance_name = @INSTANCE_NAME@
log_path = @ROOT@/dovecot.log
default_login_user = @LOGIN_USER@
default_internal_user = @INTERNAL_USER@

protocols = imap
listen = @LISTEN@

# --- TLS: a self-signed certificate for DNS:localhost and IP:127.0.0.1 (ca_file).
ssl = yes
ssl_cert = <@ROOT@/tls/cert.pem
ssl_key = <@ROOT@/tls/key.pem
ssl_min_protocol = TLSv1.2

# --- Authentication: plaintext allowed (loopback tests), one passwd-file per user, because Dovecot
# re-reads a changed passwd-file at most once a second and a new user must log in at once.
# The passwd-file answers PLAIN, LOGIN and lookups without a mechanism ("none": doveadm's user
# lookups through the static userdb) only: unrestricted, it would also accept a user's password sent
# as an XOAUTH2/OAUTHBEARER "token" when the oauth2 passdb below is enabled.
disable_plaintext_auth = no
auth_mechanisms = @AUTH_MECHANISMS@
auth_failure_delay = 0
passdb {
  driver = passwd-file
  mechanisms = plain login none
  args = scheme=PLAIN username_format=%u @ROOT@/users/%u
}
# --- OAuth2 bearer tokens (XOAUTH2, OAUTHBEARER), checked by introspection at a local authorization
# server; only when started with oauth2_introspection_url (empty otherwise).
@OAUTH_PASSDB@
userdb {
  driver = static
  args = uid=@MAIL_UID@ gid=@MAIL_GID@ home=@ROOT@/home/%u
}

# --- Mail: Maildir++ (INBOX is the maildir root, subfolders .Name in modified UTF-7), "/" as the
# hierarchy separator clients see, special-use folders created for every user.
mail_uid = @MAIL_UID@
mail_gid = @MAIL_GID@
first_valid_uid = @MAIL_UID@
first_valid_gid = @MAIL_GID@
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 1000
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \Archive
    auto = subscribe
  }
}

# --- Services: plain+STARTTLS and implicit-TLS listeners on free ports.
service imap-login {
  inet_listener imap {
    address = @LISTEN@
    port = @IMAP_PORT@
  }
  inet_listener imaps {
    address = @LISTEN@
    port = @IMAPS_PORT@
    ssl = yes
  }
}
""" + _SERVICES_TAIL

# Settings added when Dovecot 2.3 is started by a non-root user (it cannot chroot or change users then).
NONROOT_CONF = """# Started without root: no chroot, every service runs as the starting user and group.
default_internal_group = {group}
service imap-login {
  chroot =
}
service anvil {
  chroot =
}
service auth-worker {
  user = $default_internal_user
}
"""


# Dovecot 2.4 (Debian 13, current Ubuntu): the same server in 2.4's syntax. What changed, checked
# with 2.4.1 here: the file must start with dovecot_config_version (and dovecot_storage_version);
# ssl_cert/ssl_key are ssl_server_cert_file/ssl_server_key_file (paths, no "<"); disable_plaintext_auth
# is auth_allow_cleartext; mail_location is mail_driver + mail_path; passdb and userdb blocks are named,
# their "args" became settings (passwd_file_path, default_password_scheme; a userdb static's fields in
# a fields block), "mechanisms" is mechanisms_filter, and %u is %{user}. A static userdb answers
# doveadm's user lookups by itself with userdb_static_allow_all_users (2.3 asked the passdb, hence its
# "mechanisms = ... none"). An inet_listener's "address" is "listen". imap_capability is unchanged.
CONF_TEMPLATE_24 = r"""dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
# mailsync throwaway Dovecot 2.4 configuration.
# Generated from CONF_TEMPLATE_24 in mailsync/testing/dovecot_conf.py; an upper-case word between two
# at-signs is a value that DovecotServer fills in. Edit the module, not this file, then run:
#   scripts/dovecot template --write

# --- This instance owns everything under its root; nothing of the system's Dovecot is used.
base_dir = @BASE_DIR@
state_dir = @ROOT@/state
instance_name = @INSTANCE_NAME@
log_path = @ROOT@/dovecot.log
default_login_user = @LOGIN_USER@
default_internal_user = @INTERNAL_USER@

protocols = imap
listen = @LISTEN@

# --- TLS: a self-signed certificate for DNS:localhost and IP:127.0.0.1 (ca_file).
ssl = yes
ssl_server_cert_file = @ROOT@/tls/cert.pem
ssl_server_key_file = @ROOT@/tls/key.pem
ssl_min_protocol = TLSv1.2

# --- Authentication: plaintext allowed (loopback tests), one passwd-file per user (see the 2.3
# template); the passwd-file answers PLAIN and LOGIN only, so that with the oauth2 passdb below a
# password sent as a bearer token is not accepted.
auth_allow_cleartext = yes
auth_mechanisms = @AUTH_MECHANISMS@
auth_failure_delay = 0
passdb passwd-file {
  mechanisms_filter = plain login
  default_password_scheme = PLAIN
  passwd_file_path = @ROOT@/users/%{user}
}
# --- OAuth2 bearer tokens (XOAUTH2, OAUTHBEARER), checked by introspection at a local authorization
# server; only when started with oauth2_introspection_url (empty otherwise).
@OAUTH_PASSDB@
userdb static {
  userdb_static_allow_all_users = yes
  fields {
    uid = @MAIL_UID@
    gid = @MAIL_GID@
    home = @ROOT@/home/%{user}
  }
}

# --- Mail: Maildir++ (INBOX is the maildir root, subfolders .Name in modified UTF-7), "/" as the
# hierarchy separator clients see, special-use folders created for every user.
mail_uid = @MAIL_UID@
mail_gid = @MAIL_GID@
first_valid_uid = @MAIL_UID@
first_valid_gid = @MAIL_GID@
mail_driver = maildir
mail_path = ~/Maildir
mail_fsync = never
mail_max_userip_connections = 1000
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \Archive
    auto = subscribe
  }
}

# --- Services: plain+STARTTLS and implicit-TLS listeners on free ports (on the global listen).
service imap-login {
  inet_listener imap {
    port = @IMAP_PORT@
  }
  inet_listener imaps {
    port = @IMAPS_PORT@
    ssl = yes
  }
}
""" + _SERVICES_TAIL

# Dovecot 2.4 started by a non-root user (2.4 refers to another setting as $SET:name).
NONROOT_CONF_24 = """# Started without root: no chroot, every service runs as the starting user and group.
default_internal_group = {group}
service imap-login {
  chroot =
}
service anvil {
  chroot =
}
service auth-worker {
  user = $SET:default_internal_user
}
"""


def oauth2_conf_24(mechanisms: tuple[str, ...], url: str, ca_file: str | None) -> str:
    """Dovecot 2.4's oauth2 passdb and its settings (2.3 reads them from a separate file)."""
    lines = ["passdb oauth2 {", "  driver = oauth2", f"  mechanisms_filter = {' '.join(mechanisms)}", "}",
             "oauth2 {", "  introspection_mode = post", f"  introspection_url = {url}",
             "  username_attribute = username", "  active_attribute = active", "  active_value = true", "}"]
    if ca_file is not None:
        lines.append(f"ssl_client_ca_file = {ca_file}")
    return "\n".join(lines) + "\n"
