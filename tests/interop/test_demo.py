"""The README's first command runs the main job end to end; prove it in every CI run."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop


def test_demo_runs_end_to_end():
    demo = Path(__file__).parents[2] / "examples" / "demo.py"
    result = subprocess.run(
        [sys.executable, str(demo)], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Signed" in result.stdout and "Revoked" in result.stdout and "Traceback" not in result.stderr
