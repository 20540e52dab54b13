"""The scale-out benchmark runs (tiny sizes) and reports finite, positive rates."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_scaling_quick(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "scaling.json").read_text())
    setups = [r["setup"] for r in results["data_parallel"]]
    assert setups == ["1 process, 1 thread", "1 process, 2 threads", "2 processes, 1 thread each"]
    for r in results["data_parallel"]:
        assert math.isfinite(r["samples_per_s"]) and r["samples_per_s"] > 0
    assert results["sweep"]["jobs_1_s"] > 0 and results["sweep"]["jobs_2_s"] > 0
    assert "| 2 processes, 1 thread each |" in (tmp_path / "scaling.md").read_text()
