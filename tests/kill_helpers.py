"""Shared by the kill/resume tests: SIGKILL a subprocess once it prints that it paused at a known point."""

import signal
import subprocess


def kill_when_paused(proc: subprocess.Popen, marker: str) -> str:
    """Read ``proc``'s stdout up to the line ``marker``, SIGKILL it, return what it printed.

    The subprocess prints ``marker`` after a checkpoint and sleeps, so the kill lands with work done past
    that checkpoint that was never saved (what a resume must redo identically).
    """
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(marker.split()[0]):
                break
        assert lines and lines[-1].strip() == marker, "".join(lines)[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return "".join(lines)
