"""The scale-out benchmark runs (tiny sizes), reports finite, positive rates for every
setup, and writes its files only where it is told to."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from pathlib import Path

from benchmarks import scaling


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` and a hash of its content."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_scaling_quick(tmp_path: Path) -> None:
    """``python -m benchmarks.scaling --quick --out DIR``, in this process: one process
    trains in this one, two are ranks that minidl.cli.launch.launch starts, and the
    Table I sweep runs with --jobs 1 and --jobs 2."""
    committed = fingerprint(scaling.RESULTS)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert scaling.main(["--quick", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scaling.json", "scaling.md"]
    assert fingerprint(scaling.RESULTS) == committed
    results = json.loads((tmp_path / "scaling.json").read_text())
    assert [r["setup"] for r in results["data_parallel"]] == [s[0] for s in scaling.SETUPS]
    assert len(scaling.SETUPS) == 3 and scaling.SETUPS[2][1] == 2  # two processes, launched
    for r in results["data_parallel"]:
        assert math.isfinite(r["samples_per_s"]) and r["samples_per_s"] > 0
    assert results["data_parallel"][0]["speedup"] == 1.0
    sweep = results["sweep"]
    assert sweep["jobs_1_s"] > 0 and sweep["jobs_2_s"] > 0
    assert sweep["speedup"] == sweep["jobs_1_s"] / sweep["jobs_2_s"]
    table = (tmp_path / "scaling.md").read_text()
    assert "| 2 processes, 1 thread each |" in table
    assert table.strip() in stdout.getvalue()  # printed as written
