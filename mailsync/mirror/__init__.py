"""Mail where a mail client reads it: Maildir and mbox naming and flags (pure), and the thin writers
that put the store's messages there (`mailsync export maildir|mbox`)."""
