"""Resolve a SecretRef (from the config file) into the secret itself.

Owns: reading ``env:NAME`` from the environment, running ``cmd:COMMAND`` (shell, stdin closed,
timeout), asking the system keyring for ``keyring:SERVICE/USER``, and passing literals through.
Must not: parse or validate the config file (mailsync.config.loader does), cache or store secrets,
or put a secret value into any message: a failing command's stdout is never shown, only its exit
status and the first line of its stderr.
"""

from __future__ import annotations

import os

from mailsync.config.model import SecretRef
from mailsync.errors import CredentialError

__all__ = ["CMD_TIMEOUT", "resolve_secret"]

CMD_TIMEOUT = 30.0  # seconds a cmd: source may take
_STDERR_LIMIT = 200  # characters of a failing command's stderr shown


def _where(ref: SecretRef) -> str:
    return ref.origin or f"the {ref.kind}: secret source"


def resolve_secret(ref: SecretRef, *, timeout: float = CMD_TIMEOUT) -> str:
    """Return the secret ``ref`` points at, or raise CredentialError (which never contains it)."""
    if ref.kind == "env":
        return _from_env(ref)
    if ref.kind == "cmd":
        return _from_cmd(ref, timeout)
    if ref.kind == "keyring":
        return _from_keyring(ref)
    if ref.kind == "literal":
        return ref.value
    raise CredentialError(f"{_where(ref)}: unknown secret source kind {ref.kind!r}",
                          hint="use env:NAME, cmd:COMMAND or keyring:SERVICE/USER")


def _from_env(ref: SecretRef) -> str:
    name = ref.value
    value = os.environ.get(name)
    if value is None:
        raise CredentialError(f"{_where(ref)}: environment variable {name} is not set",
                              hint=f"export {name}=... in the environment mailsync runs in")
    if value == "":
        raise CredentialError(f"{_where(ref)}: environment variable {name} is set but empty",
                              hint=f"export {name}=... with the secret as its value")
    return value


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    line = text.splitlines()[0].strip() if text else ""
    if len(line) > _STDERR_LIMIT:
        line = line[: _STDERR_LIMIT - 3] + "..."
    return line


def _from_cmd(ref: SecretRef, timeout: float) -> str:
    import subprocess  # here: most syncs take no secret from a command, and start 2 ms sooner

    command = ref.value
    shown = f"`{command}`"
    try:
        # Same session and process group as mailsync, so tools that prompt on the terminal work.
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CredentialError(f"{_where(ref)}: could not start the command {shown}: {exc.strerror or exc}",
                              hint="check that a POSIX shell (/bin/sh) is available") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            pass  # a grandchild still holds the pipes; stop reading them
        finally:
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
        raise CredentialError(f"{_where(ref)}: the command {shown} did not finish within {timeout:g} s",
                              hint="make the command print the secret without waiting for input "
                                   "(its stdin is closed)") from None

    if proc.returncode != 0:
        status = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
                  else f"exited with status {proc.returncode}")
        line = _first_line(err)
        detail = f": {line}" if line else " (nothing on stderr)"
        hint = "run the command in a shell to see what it needs"
        if proc.returncode == 127:
            hint = "check that the program is installed and on PATH (status 127: command not found)"
        # stdout is never shown: it may hold the secret or part of it.
        raise CredentialError(f"{_where(ref)}: the command {shown} {status}{detail}", hint=hint)

    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"{_where(ref)}: the command {shown} printed output that is not UTF-8 (not shown)",
                              hint="make the command print the secret as UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if text == "":
        raise CredentialError(f"{_where(ref)}: the command {shown} printed nothing on stdout",
                              hint="make the command print the secret on stdout")
    if "\n" in text:
        count = text.count("\n") + 1
        raise CredentialError(f"{_where(ref)}: the command {shown} printed {count} lines (not shown); "
                              "a secret is a single line",
                              hint="print only the secret, e.g. append `| head -n 1` to the command")
    return text


def _from_keyring(ref: SecretRef) -> str:
    service, _, user = ref.value.partition("/")
    try:
        import keyring
    except ImportError:
        raise CredentialError(f"{_where(ref)}: keyring:{service}/{user} needs the Python package 'keyring', "
                              "which is not installed",
                              hint="pip install keyring, or use env:NAME or cmd:COMMAND") from None
    backend = _backend_name(keyring)
    try:
        value = keyring.get_password(service, user)
    except Exception as exc:  # any backend failure (locked, no backend, D-Bus down ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        detail = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        raise CredentialError(
            f"{_where(ref)}: the keyring backend {backend} failed to look up service {service!r} "
            f"user {user!r}: {detail}",
            hint="unlock or configure the keyring (try: keyring get SERVICE USER; see `keyring --list-backends`), "
                 "or use env:NAME or cmd:COMMAND",
        ) from None
    if value is None or value == "":
        what = "no password" if value is None else "an empty password"
        raise CredentialError(
            f"{_where(ref)}: the keyring ({backend}) has {what} for service {service!r} user {user!r}",
            hint=f"store it with: keyring set {service} {user}",
        )
    return value


def _backend_name(keyring_module: object) -> str:
    try:
        kr = keyring_module.get_keyring()  # type: ignore[attr-defined]
    except Exception:
        return "(unknown)"
    cls = type(kr)
    return f"{cls.__module__}.{cls.__qualname__}"
