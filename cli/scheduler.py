"""``hamnet-scheduler start|stop|status``: Luigi's central scheduler, started safely.

``luigid`` has no authentication: whoever reaches its port can read every task's parameters,
mark tasks done or failed, disable workers and stop a run, and can make a worker run any task
class installed there with parameters of their choosing (docs/pipeline.md, "Scaling out").
Plain ``luigid`` listens on every interface and keeps its state pickle in a system folder.
This command:

* binds ``127.0.0.1`` unless told otherwise; refuses the wildcard addresses (``0.0.0.0``,
  ``::``) always, and any other non-loopback address unless ``--expose`` says that the
  network is private and the port firewalled; after start it reads the listening sockets of
  the started process from ``/proc`` and stops it if one is not what was asked for;
* keeps the state pickle, the logs and the pid file in a private folder (mode 0700, owned by
  this user; default ``<output-dir>/scheduler``). The state file is unpickled when the
  scheduler starts, so whoever can write it can run code as the scheduler's user;
* runs ``luigid`` in the foreground in its own session with umask 077 instead of
  ``luigid --background``, whose daemon context (python-daemon) sets umask 0 and so writes
  the state file and logs world-writable.

Exit status: 0 done (or already running), 1 the scheduler did not start or stop, 2 refused
(unsafe address or folder; the message says which and how to fix it).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from pipeline.output_root import OutputRootError, check_output_root

PID_FILE = "luigid.pid"
STATE_FILE = "luigid.state"
OUT_FILE = "luigid.out"  # luigid's stdout/stderr (bind errors, tracebacks)
SERVER_LOG = "luigi-server.log"  # luigid's own log (--logdir)
_LUIGID = "import sys; from luigi.cmdline import luigid; luigid(sys.argv[1:])"


class Refused(RuntimeError):
    """An unsafe request; the message names the address or folder and the fix."""


# --------------------------------------------------------------------------- checks


def check_bind_address(address: str, expose: bool = False) -> list[str]:
    """The IP addresses ``address`` binds to; raise :class:`Refused` where that is unsafe.

    Wildcards (``""``, ``0.0.0.0``, ``::``) listen on every interface, public ones included,
    and are refused always. A hostname counts as what it resolves to (``localhost`` is
    ``127.0.0.1`` and ``::1``). Non-loopback addresses need ``expose=True``.
    """
    if not address.strip():
        raise Refused("an empty --address means every interface; give 127.0.0.1 or a private address")
    try:
        ips = sorted({str(info[4][0]) for info in socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP)})
    except socket.gaierror as exc:
        raise Refused(f"--address {address}: cannot resolve it ({exc.strerror})") from None
    for ip in ips:
        parsed = ipaddress.ip_address(ip.split("%")[0])
        if parsed.is_unspecified:
            raise Refused(
                f"--address {address} ({ip}) listens on every interface, public ones included; "
                "use 127.0.0.1 (workers on other machines come in through an SSH tunnel) or, on a "
                "private firewalled network, that interface's own address with --expose"
            )
        if not parsed.is_loopback and not expose:
            raise Refused(
                f"--address {address} ({ip}) is reachable from other machines and the scheduler "
                "has no authentication; use 127.0.0.1 with an SSH tunnel per worker machine, or "
                "add --expose if this is a private network with the port firewalled to the workers"
            )
    return ips


def ensure_private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` with mode 0700 or check that it is one: a real folder, ours, 0700.

    An existing folder that others could write (or that another user owns) is refused, not
    repaired: its state file may already have been replaced, and it is unpickled at start.
    """
    d = Path(path).expanduser().absolute()
    if not d.exists() and not d.is_symlink():
        d.parent.mkdir(parents=True, exist_ok=True)
        d.mkdir(mode=0o700)
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask; make it exact
    st = d.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise Refused(f"scheduler state folder {d} is not a plain folder (a link or a file); give another --state-dir")
    if st.st_uid != os.geteuid():
        raise Refused(
            f"scheduler state folder {d} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}); "
            "start the scheduler as its owner or give another --state-dir"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise Refused(
            f"scheduler state folder {d} has mode {stat.S_IMODE(st.st_mode):04o}, so other users could "
            f"replace its state file, which the scheduler unpickles at start; check its contents, then "
            f"`chmod 700 {d}`"
        )
    return d


# --------------------------------------------------------------------------- /proc


def _decode_proc_address(hex_addr: str) -> str:
    """``/proc/net/tcp[6]`` address (host-order 32-bit words in hex) -> text form."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_sockets(pid: int | None = None) -> list[tuple[str, int]]:
    """Sorted (address, port) of TCP sockets in LISTEN state, of one process if ``pid`` is given.

    Read from ``/proc/net/tcp`` and ``tcp6`` (Linux), matched to the process through the socket
    inodes in ``/proc/<pid>/fd``: what the kernel says, not what the command line asked for.
    """
    inodes = None
    if pid is not None:
        inodes = set()
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            if inodes is not None and fields[9] not in inodes:
                continue
            addr, port = fields[1].split(":")
            found.add((_decode_proc_address(addr), int(port, 16)))
    return sorted(found)


def _running_pid(state_dir: Path) -> int | None:
    """The pid in the pid file if that process is alive and is a luigid (not a reused pid)."""
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path("/proc").is_dir() else b"luigid"
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid if b"luigid" in cmdline else None


# --------------------------------------------------------------------------- commands


def resolve_state_dir(output_dir: str | None, state_dir: str | None) -> Path:
    """``--state-dir`` as given, else ``<output-dir>/scheduler`` after checking the output root."""
    if state_dir:
        return ensure_private_dir(state_dir)
    root = check_output_root(output_dir or "demo_out")
    return ensure_private_dir(root / "scheduler")


def start(state_dir: Path, address: str, port: int, expose: bool = False, wait_s: float = 30.0) -> int:
    """Start luigid on ``address:port`` with its files in ``state_dir``; return its pid.

    Waits until it accepts connections, then checks its listening sockets; on any failure the
    process is stopped and the reason raised.
    """
    ips = check_bind_address(address, expose)
    running = _running_pid(state_dir)
    if running is not None:
        print(f"luigid already running (pid {running}), listening on {_fmt(listening_sockets(running))}")
        return running
    argv = [sys.executable, "-c", _LUIGID, "--address", address, "--port", str(port)]
    argv += ["--state-path", str(state_dir / STATE_FILE), "--logdir", str(state_dir)]
    out_fd = os.open(state_dir / OUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(out_fd, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=state_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell that started it, like --background
            umask=0o077,
        )
    try:
        _wait_listening(proc, ips[0], port, wait_s, state_dir)
        sockets = listening_sockets(proc.pid) if Path("/proc/net/tcp").exists() else []
        unexpected = [s for s in sockets if s[0] not in ips or s[1] != port]
        if unexpected:
            raise RuntimeError(f"luigid listens on {_fmt(unexpected)}, not only on {address}; stopped it")
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    pid_path = state_dir / PID_FILE
    pid_path.write_text(f"{proc.pid}\n")
    os.chmod(pid_path, 0o600)
    shown = _fmt(sockets) if sockets else f"{address}:{port}"
    print(f"luigid (pid {proc.pid}) listening on {shown}; state, logs and pid file in {state_dir}")
    host = "127.0.0.1" if ipaddress.ip_address(ips[0].split("%")[0]).is_loopback else ips[0]
    print(f"workers: luigi --module tasks RunAll --scheduler-host {host} --scheduler-port {port} ...")
    return proc.pid


def _wait_listening(proc: subprocess.Popen, ip: str, port: int, wait_s: float, state_dir: Path) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None:
            tail = (state_dir / OUT_FILE).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"luigid exited with code {proc.returncode}; {state_dir / OUT_FILE} ends:\n{tail}")
        try:
            with socket.create_connection((ip, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"luigid did not listen on {ip}:{port} within {wait_s:.0f} s") from None
            time.sleep(0.1)


def stop(state_dir: Path, wait_s: float = 30.0) -> bool:
    """SIGTERM the luigid of ``state_dir`` (it saves its state on the way out); False if none ran."""
    pid = _running_pid(state_dir)
    if pid is None:
        (state_dir / PID_FILE).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while _alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"luigid (pid {pid}) still runs {wait_s:.0f} s after SIGTERM")
        time.sleep(0.1)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


def _fmt(sockets: list[tuple[str, int]]) -> str:
    return ", ".join(f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in sockets) or "nothing"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hamnet-scheduler", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--output-dir", default="demo_out", help="storage root; state goes to <output-dir>/scheduler")
    p.add_argument("--state-dir", default=None, help="private folder (0700) for state, logs and pid file instead")
    p.add_argument("--address", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8082)
    p.add_argument(
        "--expose",
        action="store_true",
        help="allow a non-loopback address: only on a private network with the port firewalled to the workers",
    )
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for luigid to listen / to stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.action == "start":  # refuse an unsafe address before creating any folder
            check_bind_address(args.address, args.expose)
        state_dir = resolve_state_dir(args.output_dir, args.state_dir)
        if args.action == "start":
            start(state_dir, args.address, args.port, args.expose, args.wait)
        elif args.action == "stop":
            print("stopped luigid" if stop(state_dir, args.wait) else f"no luigid running for {state_dir}")
        else:
            pid = _running_pid(state_dir)
            if pid is None:
                print(f"no luigid running for {state_dir}")
                return 1
            print(f"luigid (pid {pid}) listening on {_fmt(listening_sockets(pid))}; state in {state_dir}")
    except (Refused, OutputRootError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
