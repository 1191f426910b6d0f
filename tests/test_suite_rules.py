"""Rules of the test suite itself: every process a test starts has a timeout. A child under an
address-space cap, or one whose memory estimate is wrong, could otherwise train for hours."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
STARTS = {"run", "check_output", "check_call", "call"}  # subprocess's functions that wait for the child
WAITS = {"wait", "communicate"}  # a Popen's


def _untimed(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        starts = isinstance(owner, ast.Name) and owner.id == "subprocess" and node.func.attr in STARTS
        waits = node.func.attr in WAITS
        timed = any(k.arg == "timeout" for k in node.keywords) or (waits and bool(node.args))  # wait(timeout)
        if (starts or waits) and not timed:
            found.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}(...)")
    return found


def test_every_process_a_test_starts_is_waited_for_with_a_timeout():
    untimed = [hit for path in sorted(TESTS.glob("*.py")) for hit in _untimed(path)]
    assert untimed == [], untimed


def test_the_rule_finds_an_untimed_call(tmp_path):
    (tmp_path / "t.py").write_text("import subprocess\nsubprocess.run(['true'])\np.wait()\np.wait(timeout=1)\n")
    assert _untimed(tmp_path / "t.py") == ["t.py:2 subprocess.run(...)", "t.py:3 p.wait(...)"]
