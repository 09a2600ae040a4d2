"""`usdtune optimize` on a terminal: driven in a pseudo-terminal as a user at a shell would.

The live view shows the phase in progress with its expected time and the run's ETA, the gate is
a prompt answered by keystroke, the closing summary's numbers are the JSON report's, colour
appears on a terminal and not with NO_COLOR.
"""
import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time

from conftest import USDTUNE

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
COLOUR = re.compile(rb"\x1b\[[0-9;]*m")


def run_in_terminal(args, env, answer=None, timeout=600):
    """Run usdtune with stdin, stdout and stderr on a pseudo-terminal; each time the output shows
    a prompt (the runtime gate, a restructure gate), type answer(that prompt) and Enter. Returns
    (exit code, everything written)."""
    fd, child_end = os.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns, 40 rows
    process = subprocess.Popen([str(USDTUNE), *args], env=env, stdin=child_end, stdout=child_end, stderr=child_end,
                               start_new_session=True)
    os.close(child_end)
    screen, answered, deadline = b"", 0, time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            plain = ANSI.sub(b"", screen)
            asked = plain.count(b"choose 1-")
            if answer and asked > answered and re.search(rb"choose 1-\d+: $", plain.rstrip(b" ") + b" "):
                # The prompt on screen is the last one: answer it from what follows its question.
                last = plain[max(plain.rfind(b"\n\n", 0, plain.rfind(b"choose 1-")), 0):]
                os.write(fd, answer(last.decode(errors="replace")).encode() + b"\n")
                answered = asked
        else:
            process.send_signal(signal.SIGTERM)
    finally:
        code = process.wait(timeout=60)
        os.close(fd)
    return code, screen


def recommended_number(screen: str) -> str:
    options = re.findall(r"^\s+(\d+)\) (\S+)(\s+\(recommended\))?", screen, re.M)
    return next(number for number, _, recommended in options if recommended)


def test_live_view_gate_by_keystroke_and_a_summary_equal_to_the_report(home, stage_copy, tmp_path):
    out = tmp_path / "out"
    code, screen = run_in_terminal(["optimize", str(stage_copy), "-o", str(out)], home, answer=recommended_number)
    text = ANSI.sub(b"", screen).decode(errors="replace")
    assert code == 0, text[-3000:]
    # The live line: the phase in progress, its expected time and the run's ETA.
    assert re.search(r"profile-stage:baseline\s+\S+ of ~\S+", text), text[:3000]
    assert "run ETA" in text
    # Settled phases scroll up one line each, marked.
    assert re.search(r"✓ usd-structure-assessment\s+\S+s\s+monolithic", text)
    # Both gates were prompts, answered here by keystroke: the runtime (Kit is installed here,
    # so there is a choice; recorded as the user's) and the restructure branch.
    assert "Which runtime" in text and text.count("choose 1-") >= 2
    preflight = json.loads((out / "setup-preflight.json").read_text())
    assert (preflight["runtime_route"], preflight["runtime_context"]["chosen_by"]) == ("standalone", "prompt")
    record = json.loads((out / "run.json").read_text())
    gate = next(p for p in record["phases"] if p["milestone"] == "restructure-decision")
    assert gate["status"] == "done" and gate["note"].endswith("(by api)"), gate
    # The summary's numbers are the report's.
    report = json.loads((out / "optimization-report.json").read_text())
    prims = next(m for m in report["metrics"] if m["name"] == "prim_count")
    assert f"prims    {prims['before']:,.0f} → {prims['after']:,.0f}" in text
    assert text.rstrip().splitlines()[-1] == {"improved": "Improved.", "neutral": "Neutral."}[report["verdict"]]
    assert COLOUR.search(screen), "colour on a terminal"
    # Logs went to the run's folder, not to the screen.
    assert list((out / "logs").glob("*.log")) and "[executor" not in text


def test_no_color_is_respected_on_a_terminal(home, stage_copy, tmp_path):
    env = dict(home, NO_COLOR="1")
    code, screen = run_in_terminal(["optimize", str(stage_copy), "-o", str(tmp_path / "out"),
                                    "--restructure", "exit", "--runtime", "standalone"], env)
    assert code == 0, screen[-2000:]
    assert not COLOUR.search(screen), "no colour with NO_COLOR"
    assert b"Neutral." in screen or b"Done." in screen
