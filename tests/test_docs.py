"""The runnable examples in the docs must run."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_sdk_example_runs_and_prints_the_answer(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "sdk.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    example = next(b for b in blocks if "asyncio.run(main())" in b)
    script = tmp_path / "example.py"
    script.write_text(example)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1851 stop"
    assert lines[1] == "{'image': 1, 'text': 1} ['https://example.org/brass-tower']"
    assert lines[2].startswith("image None ['The Brass Tower of Quillby']")
    assert "[text search: 1 results]" in out.stdout
