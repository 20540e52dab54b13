import sys
from pathlib import Path

# Tests import helpers such as `twin` from this folder.
sys.path.insert(0, str(Path(__file__).parent))


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Numbers the hardening tests measure (fuzz cases tried, signal-to-exit latencies),
    recorded with record_property("hardening: ...", value), shown whatever -s says."""
    lines = {  # from any phase's report (a fixture records at teardown), once each
        f"{name.removeprefix('hardening: ')}: {value}": None
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name.startswith("hardening: ")
    }
    if lines:
        terminalreporter.section("hardening")
        for line in lines:
            terminalreporter.write_line(line)
