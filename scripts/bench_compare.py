"""`scripts/bench compare`: mailsync beside mbsync (isync) and offlineimap3, on one Dovecot and one corpus.

    scripts/bench compare [--messages 20000] [--folders 10] [--runs 3]
                          [--tools mailsync,mbsync,mbsync-nofsync,offlineimap]
                          [--scenarios raw,initial,nochange,changes] [--trace] [--keep] [--timeout 3600]

Needs the Debian packages isync (mbsync), offlineimap3 and time (GNU time, for the peak RSS):
    apt-get -o DPkg::Lock::Timeout=900 install -y isync offlineimap3 time

Generates N messages (default 20,000 in 10 folders, about 435 MB; `--messages 200000` for the large
case) into a throwaway Dovecot, and measures each tool syncing its own store from that server (plain
IMAP on loopback, password login), as whole processes: wall time, CPU time (user + system of the
process and its threads) and peak RSS. The tools:
  mailsync         `mailsync sync` into a SQLite store
  mbsync           mbsync as it ships (FSync yes: an fsync per message written), pulling into a Maildir
                   (Sync Pull, Create Near, Expunge Near: a mirror of the server, like mailsync's store)
  mbsync-nofsync   the same with `FSync no`, a fairer line for the bulk download
  offlineimap      offlineimap3 as it ships (fsync on), into a Maildir, the server side read-only
The scenarios, each measured `--runs` times (medians printed):
  raw       the ceiling: a plain Python loop, per folder EXAMINE + UID FETCH 1:* (BODY.PEEK[]) (scripts/bench)
  initial   each tool into an empty store
  nochange  each tool's store as its initial sync left it, nothing changed on the server
  changes   the same store, after a change set made on the server by a second IMAP client: 200 flag
            changes (\\Seen or \\Flagged toggled), 50 new messages and 20 expunges, spread evenly over
            the folders; made once, so every tool and every run sees the same change set
Before the snapshots are taken, every folder is made to track MODSEQs (a client has used CONDSTORE
there, as on any mailbox a CONDSTORE client syncs; see track_modseqs).
Every counted run starts from the same restored state: the server's mail (Maildir and Dovecot's
indexes) is put back from a snapshot taken after the load (or after the change set), Dovecot is
restarted, and the tool's store is put back from the snapshot taken after its first initial sync
(Maildirs as hard links: message files are never rewritten in place; everything else copied). After
every run the tool's store is checked against the server: per folder the number of messages, of
\\Seen and of \\Flagged ones must be equal, or the script stops. Within a round the tools take turns per
scenario, so drift on a shared machine reaches all of them alike.
The table gives the medians and, per peer, the ratio mailsync / peer of wall and CPU time (below 1:
mailsync is faster). With --trace, one more after-changes sync of mailsync runs under scripts/trace-sync
and its per-command timeline is printed. Every process started here (tools, Dovecot) is ended on
every path, including Ctrl-C, SIGTERM and SIGHUP.
Costs to plan for: offlineimap3 took about 30 ms per message of an initial sync here (about 10 min
for 20,000 messages per run, hours at 200,000: leave it out there with
--tools mailsync,mbsync,mbsync-nofsync, or raise --timeout); mbsync with FSync yes pays one fsync per
message. Disk: the server's mail and the Maildirs are snapshotted as hard links, mailsync's store
as a copy (two copies of its size, about 0.5 GB at 20,000 messages).
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(ROOT))

from mailsync.testing.corpus import generate_bulk, load_into  # noqa: E402
from mailsync.testing.dovecot import DovecotServer  # noqa: E402

USER, PASSWORD = "bench", "bench"
TOOLS = ("mailsync", "mbsync", "mbsync-nofsync", "offlineimap")
SCENARIOS = ("raw", "initial", "nochange", "changes")
TITLES = {"raw": "raw FETCH ceiling", "initial": "initial sync", "nochange": "no-change sync",
          "changes": "after changes"}
FLAG_CHANGES, NEW, EXPUNGED = 200, 50, 20


def _bench_module():
    """scripts/bench as a module (its RAW_LOOP); it has no .py suffix."""
    loader = importlib.machinery.SourceFileLoader("bench_script", str(SCRIPTS / "bench"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("bench_script", loader))
    loader.exec_module(module)
    return module


# --- processes ---------------------------------------------------------------------------------

_live: set[int] = set()  # process groups started here and not reaped yet


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mb: float
    out: str


def measure(argv: list[str], env: dict, log: Path, timeout: float) -> Sample:
    """Run one process in its own process group; its wall time, CPU time and peak RSS (wait4: this
    child's own rusage). Raises SystemExit with its output if it fails or outlives ``timeout``."""
    # The peak RSS comes from GNU time, which forks the process itself: a child of this (larger)
    # Python process would start with our peak RSS as its own (Linux keeps the high-water mark of
    # the memory an exec replaces). CPU time is wait4's (time's own share is about a millisecond).
    rss_file = log.with_suffix(".rss")
    argv = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *argv]
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        _live.add(proc.pid)
        timer = threading.Timer(timeout, _killpg, (proc.pid,))
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    _killpg(proc.pid)  # anything it left behind in its group
    _live.discard(proc.pid)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode} (after {wall:.1f} s):\n{text[-3000:]}")
    rss_kb = int(rss_file.read_text().split()[-1])
    return Sample(wall, usage.ru_utime + usage.ru_stime, rss_kb / 1024, text)


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_all() -> None:
    for pgid in list(_live):
        _killpg(pgid)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pgid, 0)
        _live.discard(pgid)


# --- snapshots and counts ----------------------------------------------------------------------

def clone_tree(src: Path, dst: Path, *, link_maildir: bool = True) -> None:
    """Copy ``src`` to ``dst`` (replaced). Files in a Maildir's cur/ and new/ are hard-linked (they
    are renamed or unlinked, never rewritten); everything else is copied, owner, mode and times
    kept. Folders keep their times too: Dovecot compares a Maildir's cur/ and new/ times with those
    in its index (a change means a rescan), and mbsync took a second longer (1.2 s instead of 0.2 s
    for a no-change sync, measured) on a Maildir restored in the same second: a restore must not
    look like a change."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    times: list[tuple[Path, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        there = dst / here.relative_to(src)
        st = here.stat()
        there.mkdir(mode=st.st_mode & 0o7777, exist_ok=True)
        os.chown(there, st.st_uid, st.st_gid)
        times.append((there, st))
        linkable = link_maildir and here.name in ("cur", "new")
        for name in filenames:
            if linkable:
                os.link(here / name, there / name)
            else:
                shutil.copy2(here / name, there / name)
                fst = (here / name).stat()
                os.chown(there / name, fst.st_uid, fst.st_gid)
    for there, st in reversed(times):  # children first: filling a folder changes its times
        os.utime(there, ns=(st.st_atime_ns, st.st_mtime_ns))


Counts = dict[str, tuple[int, int, int]]  # folder -> (messages, \Seen, \Flagged), folders with mail only


def maildir_counts(root: Path, *, dovecot_layout: bool) -> Counts:
    """Per folder of a Maildir tree: dovecot_layout = Maildir++ (root is INBOX, folders ".Name"),
    otherwise one directory per folder (mbsync Verbatim, offlineimap)."""
    counts: Counts = {}
    for cur in root.rglob("cur"):
        folder_dir = cur.parent
        if dovecot_layout:
            name = "INBOX" if folder_dir == root else folder_dir.name.lstrip(".").replace(".", "/")
        else:
            name = str(folder_dir.relative_to(root))
        n = seen = flagged = 0
        for sub in ("cur", "new"):
            for entry in os.scandir(folder_dir / sub):
                n += 1
                info = entry.name.rpartition(":2,")[2] if ":2," in entry.name else ""
                seen += "S" in info
                flagged += "F" in info
        if n:
            counts[name] = (n, seen, flagged)
    return counts


def mailsync_counts(py: str, conf: Path, env: dict) -> Counts:
    out = subprocess.run([py, "-m", "mailsync", "--config", str(conf), "export", "messages"], env=env,
                         capture_output=True, check=True).stdout
    counts: dict[str, list[int]] = {}
    for line in out.splitlines():
        row = json.loads(line)
        c = counts.setdefault(row["folder"], [0, 0, 0])
        c[0] += 1
        c[1] += "\\Seen" in row["flags"]
        c[2] += "\\Flagged" in row["flags"]
    return {k: tuple(v) for k, v in counts.items() if v[0]}


def check(tool: str, got: Counts, want: Counts, what: str) -> None:
    if got != want:
        diff = {f: (got.get(f), want.get(f)) for f in sorted(set(got) | set(want)) if got.get(f) != want.get(f)}
        raise SystemExit(f"{tool} after {what}: its store disagrees with the server "
                         f"(folder: (store, server) as messages, \\Seen, \\Flagged): {diff}")


# --- the tools ---------------------------------------------------------------------------------

@dataclass
class Tool:
    name: str
    home: Path  # everything it keeps: config, store, state (snapshotted whole)
    snapshot: Path
    snapshotted: bool = False
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    @property
    def mail(self) -> Path:
        return self.home / "mail"

    def write_config(self, port: int) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.name != "mailsync":
            self.mail.mkdir(exist_ok=True)
        conf = self.config_path
        if self.name == "mailsync":
            text = (f'[store]\nurl = "sqlite:///{self.home}/store.db"\n\n[[account]]\nname = "bench"\n'
                    f'host = "127.0.0.1"\nport = {port}\ntls = "none"\nusername = "{USER}"\n'
                    f'password = "{PASSWORD}"\n')
        elif self.name.startswith("mbsync"):
            fsync = "no" if self.name == "mbsync-nofsync" else "yes"
            text = (f"FSync {fsync}\n\nIMAPAccount bench\nHost 127.0.0.1\nPort {port}\nUser {USER}\n"
                    f"Pass {PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\nIMAPStore far\nAccount bench\n\n"
                    f"MaildirStore near\nPath {self.mail}/\nInbox {self.mail}/INBOX\nSubFolders Verbatim\n\n"
                    f"Channel bench\nFar :far:\nNear :near:\nPatterns *\nCreate Near\nSync Pull\n"
                    f"Expunge Near\nSyncState *\n")
        else:
            text = (f"[general]\naccounts = bench\nmetadata = {self.home}/meta\n\n[Account bench]\n"
                    f"localrepository = near\nremoterepository = far\n\n[Repository near]\ntype = Maildir\n"
                    f"localfolders = {self.mail}\n\n[Repository far]\ntype = IMAP\nremotehost = 127.0.0.1\n"
                    f"remoteport = {port}\nremoteuser = {USER}\nremotepass = {PASSWORD}\nssl = no\n"
                    f"starttls = no\nreadonly = True\n")
        conf.write_text(text)
        conf.chmod(0o600)

    @property
    def config_path(self) -> Path:
        return self.home / {"mailsync": "config.toml", "offlineimap": "offlineimaprc"}.get(self.name, "mbsyncrc")

    def argv(self, py: str) -> list[str]:
        if self.name == "mailsync":
            return [py, "-m", "mailsync", "--config", str(self.config_path), "sync", "--quiet"]
        if self.name.startswith("mbsync"):
            return ["mbsync", "-q", "-c", str(self.config_path), "-a"]
        return ["offlineimap", "-c", str(self.config_path), "-u", "quiet", "-o"]

    def counts(self, py: str, env: dict) -> Counts:
        if self.name == "mailsync":
            return mailsync_counts(py, self.config_path, env)
        return maildir_counts(self.mail, dovecot_layout=False)

    def empty(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def take_snapshot(self) -> None:
        clone_tree(self.home, self.snapshot, link_maildir=self.name != "mailsync")
        self.snapshotted = True

    def restore(self) -> None:
        clone_tree(self.snapshot, self.home, link_maildir=self.name != "mailsync")


# --- the server --------------------------------------------------------------------------------

class Server:
    """The Dovecot, and snapshots of the user's mail (Maildir + indexes) to restart it from."""

    def __init__(self, work: Path) -> None:
        self.dovecot = DovecotServer(work / "dovecot")
        self.home = self.dovecot.home_dir / USER
        self.snapshots = work / "server-snapshots"

    def snapshot(self, name: str) -> Counts:
        self.dovecot.stop()
        clone_tree(self.home, self.snapshots / name)
        return maildir_counts(self.snapshots / name / "Maildir", dovecot_layout=True)

    def restart_from(self, name: str) -> int:
        """Stop, put the mail back as snapshot ``name`` left it, start; the plain IMAP port."""
        self.dovecot.stop()
        clone_tree(self.snapshots / name, self.home)
        os.sync()  # nothing of the restore left to write back during a measured run
        self.dovecot.start()
        return self.dovecot.imap_port


def track_modseqs(port: int) -> None:
    """Have Dovecot keep a MODSEQ per message in every folder, as it does once any client has used
    CONDSTORE there (as on a mailbox mailsync syncs): one SELECT per folder with CONDSTORE enabled.
    The snapshots are taken after this. Without it, the change set was made on folders that tracked
    no MODSEQs, and the first QRESYNC after it was told that every message had changed: mailsync's
    after-changes run re-read the flags of all 20,000 messages (1.2-1.8 s of CPU instead of about
    0.5 s), a state no synced mailbox is in; mbsync, which reads every flag anyway, paid nothing."""
    c = imaplib.IMAP4("127.0.0.1", port)
    try:
        c.login(USER, PASSWORD)
        assert c._simple_command("ENABLE", "CONDSTORE")[0] == "OK"
        for line in c.list()[1]:
            name = line.decode().rsplit(' "/" ', 1)[-1]
            assert c.select(name, readonly=True)[0] == "OK", name
    finally:
        with contextlib.suppress(Exception):
            c.logout()


def make_changes(port: int, folders: list[str], seed_messages: list[bytes]) -> None:
    """The change set, by a second IMAP client: FLAG_CHANGES flag toggles, NEW appends and EXPUNGED
    expunges, dealt round-robin over ``folders``; deterministic for a given server state."""
    def share(total: int, k: int) -> int:
        return total // len(folders) + (k < total % len(folders))

    c = imaplib.IMAP4("127.0.0.1", port)
    try:
        c.login(USER, PASSWORD)
        new = iter(seed_messages)
        for k, folder in enumerate(folders):
            typ, _ = c.select(folder)
            assert typ == "OK", folder
            uids = [int(u) for u in c.uid("SEARCH", "ALL")[1][0].split()]
            n_flags, n_gone = share(FLAG_CHANGES, k), share(EXPUNGED, k)
            if len(uids) < n_flags + n_gone:
                raise SystemExit(f"folder {folder} has {len(uids)} messages: too few for the change set")
            step = max(1, (len(uids) - n_gone) // max(1, n_flags))
            changed = uids[:len(uids) - n_gone:step][:n_flags]
            for i, uid in enumerate(changed):
                flag = "\\Seen" if i % 2 else "\\Flagged"
                flags = c.uid("FETCH", str(uid), "(FLAGS)")[1][0]
                op = "-FLAGS.SILENT" if flag.encode() in flags else "+FLAGS.SILENT"
                assert c.uid("STORE", str(uid), op, f"({flag})")[0] == "OK"
            gone = ",".join(str(u) for u in uids[len(uids) - n_gone:])
            if gone:
                assert c.uid("STORE", gone, "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
                assert c.uid("EXPUNGE", gone)[0] == "OK"
            for _ in range(share(NEW, k)):
                assert c.append(folder, None, None, next(new))[0] == "OK"
            c.close()
    finally:
        with contextlib.suppress(Exception):
            c.logout()


# --- the run -----------------------------------------------------------------------------------

def _table(tools: list[Tool], raw: list[Sample], runs: int, title: str = "") -> None:
    def med(samples: list[Sample], attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in samples)

    ms = next((t for t in tools if t.name == "mailsync"), None)
    print(f"\n{title}medians of {runs} run(s); ratio = mailsync / this tool (below 1: mailsync faster)")
    print(f"{'scenario':18} {'tool':15} {'wall s':>8} {'CPU s':>7} {'peak RSS MB':>12} {'ratio wall':>11} "
          f"{'ratio CPU':>10}")
    if raw:
        line = f"{TITLES['raw']:18} {'python loop':15} {med(raw, 'wall'):8.2f} {med(raw, 'cpu'):7.2f} " \
               f"{med(raw, 'rss_mb'):12.0f}"
        if ms is not None and ms.samples.get("initial"):
            line += f" {med(ms.samples['initial'], 'wall') / med(raw, 'wall'):11.2f}   (mailsync initial / raw)"
        print(line)
    for scen in SCENARIOS[1:]:
        for t in tools:
            s = t.samples.get(scen)
            if not s:
                continue
            line = f"{TITLES[scen]:18} {t.name:15} {med(s, 'wall'):8.2f} {med(s, 'cpu'):7.2f} {med(s, 'rss_mb'):12.0f}"
            if ms is not None and t is not ms and ms.samples.get(scen):
                m = ms.samples[scen]
                line += f" {med(m, 'wall') / med(s, 'wall'):11.2f} {med(m, 'cpu') / max(med(s, 'cpu'), 1e-9):10.2f}"
            print(line)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3, help="counted runs per tool and scenario (medians printed)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one run may take before it is killed")
    ap.add_argument("--trace", action="store_true",
                    help="then one traced after-changes sync of mailsync (scripts/trace-sync)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (server stopped)")
    args = ap.parse_args(argv)
    names = [n for n in args.tools.split(",") if n]
    scenarios = [s for s in args.scenarios.split(",") if s]
    bad = [n for n in names if n not in TOOLS] + [s for s in scenarios if s not in SCENARIOS]
    if bad or args.runs < 1:
        ap.error(f"unknown tool or scenario {bad}" if bad else "--runs must be at least 1")
    if not os.access("/usr/bin/time", os.X_OK):
        raise SystemExit("GNU time is not installed: apt-get -o DPkg::Lock::Timeout=900 install -y time")
    for needed, package in (("mbsync", "isync"), ("offlineimap", "offlineimap3")):
        if any(n.startswith(needed) for n in names) and shutil.which(needed) is None:
            raise SystemExit(f"{needed} is not installed: apt-get -o DPkg::Lock::Timeout=900 install -y {package}")
    if any(s in scenarios for s in ("nochange", "changes")) and "initial" not in scenarios:
        scenarios.insert(0, "initial")  # it makes the store the later scenarios start from
    scenarios = [s for s in SCENARIOS if s in scenarios]

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for signum in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal too: Dovecot and the tools are ended
        signal.signal(signum, stop)

    work = Path(tempfile.mkdtemp(prefix="mailsync-bench-compare-"))
    work.chmod(0o755)
    server = Server(work)
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    logs = work / "logs"
    logs.mkdir()
    tools = [Tool(n, work / "tools" / n, work / "tool-snapshots" / n) for n in names]
    raw_samples: list[Sample] = []
    try:
        subprocess.run([py, "-m", "compileall", "-q", str(ROOT / "mailsync")], check=True)  # as pip leaves it
        server.dovecot.start()
        server.dovecot.add_user(USER, PASSWORD)
        t0 = time.perf_counter()
        load_into(server.dovecot, USER, generate_bulk(args.messages, folders=args.folders, seed=1))
        print(f"loaded {args.messages} messages in {args.folders} folders in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        raw_argv = [py, "-c", _bench_module().RAW_LOOP, "127.0.0.1", str(server.dovecot.imap_port), USER,
                    PASSWORD, "none", str(server.dovecot.ca_file)]
        warm = measure(raw_argv, env, logs / "warm-up.log", args.timeout)  # the server's files in the page cache
        total_mb = int(warm.out.split()[0]) / 1e6
        track_modseqs(server.dovecot.imap_port)
        before = server.snapshot("before")
        folders = sorted(f for f in before if f != "INBOX")
        server.restart_from("before")
        new_raw = [m.raw for m in generate_bulk(NEW, folders=1, seed=2)]
        make_changes(server.dovecot.imap_port, folders, new_raw)
        after = server.snapshot("after")
        print(f"change set on the server: {FLAG_CHANGES} flag changes, {NEW} new, {EXPUNGED} expunged over "
              f"{len(folders)} folders; messages {sum(c[0] for c in before.values())} -> "
              f"{sum(c[0] for c in after.values())}", file=sys.stderr)

        for r in range(1, args.runs + 1):
            for scen in scenarios:
                if scen == "raw":
                    raw_argv[4] = str(server.restart_from("before"))
                    raw_samples.append(measure(raw_argv, env, logs / f"raw-{r}.log", args.timeout))
                    print(f"[run {r}] raw: {raw_samples[-1].wall:.2f} s", file=sys.stderr)
                    continue
                for tool in tools:
                    port = server.restart_from("after" if scen == "changes" else "before")
                    if scen == "initial":
                        tool.empty()
                    else:
                        tool.restore()
                    tool.write_config(port)
                    os.sync()
                    s = measure(tool.argv(py), env, logs / f"{tool.name}-{scen}-{r}.log", args.timeout)
                    tool.samples.setdefault(scen, []).append(s)
                    check(tool.name, tool.counts(py, env), after if scen == "changes" else before, TITLES[scen])
                    if scen == "initial" and not tool.snapshotted:
                        tool.take_snapshot()
                    print(f"[run {r}] {scen} {tool.name}: {s.wall:.2f} s wall, {s.cpu:.2f} s CPU, "
                          f"{s.rss_mb:.0f} MB", file=sys.stderr)
            if r < args.runs:
                _table(tools, raw_samples, r, f"so far ({r} of {args.runs} runs): ")

        print(f"\n{args.messages} messages, {total_mb:.0f} MB, {args.folders} folders; Dovecot on loopback, "
              f"plain IMAP; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print(f"change set: {FLAG_CHANGES} flag changes, {NEW} new, {EXPUNGED} expunged, over {len(folders)} folders")
        _table(tools, raw_samples, args.runs)

        ms = next((t for t in tools if t.name == "mailsync"), None)
        if args.trace and ms is not None and ms.snapshotted:
            port = server.restart_from("after")
            ms.restore()
            ms.write_config(port)
            os.sync()
            traced = measure([py, str(SCRIPTS / "trace-sync"), "--", "--config", str(ms.config_path), "sync"],
                             env, logs / "trace.log", args.timeout)
            print(f"\ntraced after-changes sync of mailsync (scripts/trace-sync; {traced.wall:.2f} s wall, "
                  f"{traced.cpu:.2f} s CPU with the tracing):\n{traced.out}")
            check("mailsync", ms.counts(py, env), after, "the traced sync")
        return 0
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}): every process started here is being ended", file=sys.stderr)
        return 130
    finally:
        _kill_all()
        server.dovecot.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
