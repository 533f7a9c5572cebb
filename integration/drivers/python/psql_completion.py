"""psql's tab completion against a gateway, through a pseudo-terminal (psql
completes only when it talks to a terminal). Usage: psql_completion.py HOST
PORT. Prints "psql completion ok" when every completion came back.
"""

import os
import pty
import select
import sys
import time

HOST, PORT = sys.argv[1], sys.argv[2]


def start_psql():
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["PAGER"] = ""
        os.environ["PSQLRC"] = "/dev/null"
        os.execvp("psql", ["psql", "-h", HOST, "-p", PORT, "-U", "velo", "-d", "velostream"])
    return pid, fd


def read_until(fd, expected, after=None, seconds=10.0):
    """Terminal output until `expected` shows up (after `after`, when
    given), or the deadline."""
    out = ""
    deadline = time.time() + seconds

    def seen():
        if after is None:
            return expected in out
        head, found, tail = out.partition(after)
        return bool(found) and expected in tail

    while time.time() < deadline and not seen():
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
    return out


def complete(fd, typed, expected):
    """Types `typed`, presses Tab twice, expects `expected` echoed back,
    then clears the line (Ctrl+C)."""
    os.write(fd, typed.encode() + b"\t\t")
    out = read_until(fd, expected)
    assert expected in out, f"{typed!r}<Tab> did not offer {expected!r}: {out!r}"
    # Ctrl+C clears the line. Wait for the prompt drawn after it, not a
    # redraw left over from the completion listing.
    os.write(fd, b"\x03")
    read_until(fd, "velostream=# ", after="^C")


pid, fd = start_psql()
banner = read_until(fd, "velostream=")
assert "velostream=" in banner, banner
# Relation names after FROM, column names after WHERE, names after \d,
# schema-qualified names, and keywords.
complete(fd, "SELECT * FROM tr", "trades")
complete(fd, "SELECT * FROM trades WHERE sy", "symbol")
complete(fd, "\\d tra", "trades")
complete(fd, "SELECT * FROM public.", "public.trades")
complete(fd, "SELECT * FROM information_schema.sche", "information_schema.schemata")
complete(fd, "\\c velo", "velostream")
os.write(fd, b"\\q\n")
os.waitpid(pid, 0)
print("psql completion ok")
