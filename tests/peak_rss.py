"""Run a command and report the peak resident memory of everything it ran: ``python peak_rss.py REPORT
[--as-limit BYTES] -- CMD...``.

The command inherits this process' stdin, stdout and stderr (a test's pipes reach it unchanged). As soon
as it starts, ``REPORT.pid`` holds its process id (for tests that signal it); when it ends, ``REPORT``
holds ``{"returncode": ..., "maxrss_kib": ...}``, the peak measured by ``getrusage(RUSAGE_CHILDREN)``
around it (this wrapper has no other child, so that is the command's own peak; KiB on Linux).
``--as-limit`` caps the command's address space (``RLIMIT_AS``), as a batch scheduler's memory limit does.
Exits with the command's status (128 + N for a command killed by signal N).
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    report, rest = argv[0], argv[1:]
    limit = None
    if rest[0] == "--as-limit":
        limit, rest = int(rest[1]), rest[2:]
    assert rest[0] == "--", rest
    cmd = rest[1:]

    def cap():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.Popen(cmd, preexec_fn=cap)
    with open(report + ".pid", "w") as f:
        f.write(str(proc.pid))
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # a signal meant for the command reaches it
    code = proc.wait()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(report, "w") as f:
        json.dump({"returncode": code, "maxrss_kib": peak}, f)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
