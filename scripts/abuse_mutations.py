"""Take each hostile-client fix out again, one at a time, and show its test in
tests/reliability/test_abuse.py failing without it (a test that passes anyway is reported).

    .venv/bin/python scripts/abuse_mutations.py            # every mutation, about 2 minutes
    .venv/bin/python scripts/abuse_mutations.py E-three-in-a-row

Works on a throwaway `git worktree` of HEAD (plus the working tree's test file), so the
checkout is never touched; the tests run under uvicorn, on Redis database MAB_TEST_DB (2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABUSE_TESTS = "tests/reliability/test_abuse.py"

ARM_CAP = (
    "proxy/admission.py",
    "        if self._inflight.get(key, 0) >= self.max_inflight:\n            return False\n"
    "        return not streamed or self._streamed.get(key, 0) < self.max_streamed",
    "        return True",
)
READ_FIRST = (
    "proxy/request_body.py",
    "    if declared is not None and declared > limits.buffer_bytes:",
    "    if True:",
)
GLOBAL_POOL = ("proxy/clients/pyreqwest.py", ".max_connections(None)", ".max_connections(512)")

#: name -> (the test it must break, the edits (file, text, replacement) that take the fix out).
MUTATIONS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    # Without both, slow uploads hold upstream connections again and starve other experiments.
    "A-no-read-first-no-arm-cap": ("test_a_slow_uploads", [READ_FIRST, GLOBAL_POOL, ARM_CAP]),
    "A-no-read-first": ("test_a_slow_uploads", [READ_FIRST, GLOBAL_POOL]),
    "A-no-arm-cap": ("test_a_large_slow_uploads", [ARM_CAP]),
    # Both layers time bodies (the protocol a little later, as a backstop): both are taken out.
    "A-no-body-timeout": (
        "test_a_a_paused_body",
        [
            ("proxy/request_body.py", "asyncio.timeout_at(min(idle_until, deadline))", "asyncio.timeout_at(None)"),
            ("proxy/wait_watch.py", "        self._deadlines[task] = deadline\n", ""),
            ("bandit/cli/http_limits.py", "elif not self._awaiting_head and self._body_timer is None:", "elif False:"),
        ],
    ),
    "D-units-by-id": (
        "test_d_",
        [("proxy/app.py", "self.sticky.remember(digest, ", "self.sticky.remember(unit, ")],
    ),
    "E-three-in-a-row": ("test_e_", [("proxy/health.py", "MIN_REQUESTS_IN_WINDOW = 20", "MIN_REQUESTS_IN_WINDOW = 3")]),
    "E-no-control-check": (
        "test_e_",
        [("proxy/target.py", "if _CONTROL.search(decoded):", "if False:")],
    ),
    "F-open-by-default": (
        "test_f_",
        [
            (
                "bandit/api/routes.py",
                "open_feedback = settings.feedback_open and not settings.feedback_token",
                "open_feedback = not settings.feedback_token",
            )
        ],
    ),
    "G-upstream-headers-kept": (
        "test_g_an_upstreams_own",
        [("proxy/headers.py", "        if name.startswith(_BANDIT_PREFIX):\n            continue\n", "")],
    ),
    "G-non-ascii-passed": (
        "test_g_header_bytes",
        [("proxy/app.py", "        if incoming.unsendable is not None:", "        if False:")],
    ),
}


def run(name: str, worktree: Path) -> bool:
    """Apply mutation `name`, run its test; True when the test failed, as it must."""
    test, edits = MUTATIONS[name]
    originals: dict[Path, str] = {}
    for path, text, replacement in edits:
        file = worktree / path
        current = file.read_text()
        originals.setdefault(file, current)
        if text not in current:
            raise SystemExit(f"{name}: {path} no longer holds {text!r}: update this script")
        file.write_text(current.replace(text, replacement, 1))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", ABUSE_TESTS, "-k", f"{test} and uvicorn"],
            cwd=worktree,
            env={**os.environ, "MAB_TEST_DB": os.environ.get("MAB_TEST_DB", "2")},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        for file, text in originals.items():
            file.write_text(text)
    failures = [line for line in result.stdout.splitlines() if line.startswith("E ")][:2]
    verdict = "fails, as it must" if result.returncode else "PASSES: the test does not see this fix"
    print(f"{name:<28} {test:<28} {verdict}" + (f"\n    {' | '.join(failures)[:300]}" if failures else ""))
    return result.returncode != 0


def main(names: list[str]) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "mutated"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(worktree), "HEAD"], cwd=ROOT, check=True)
        try:
            shutil.copy(ROOT / ABUSE_TESTS, worktree / ABUSE_TESTS)
            caught = [run(name, worktree) for name in names or list(MUTATIONS)]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=True)
    return 0 if all(caught) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
