"""Times `pullctl validate` over 500 generated source files and `pullctl --help` (median of 5 runs each).

    .venv/bin/python bench/validate_bench.py [--files 500] [--runs 5]

Targets (issue 2): validate 500 files < 1 s, --help < 0.3 s on the 2-core machine. Prints figures only.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = """\
source_id: source-{n:04d}
ingestion:
  schedule: "{minute} */{hours} * * *"
  timezone: Europe/Berlin
  request:
    base_url: https://api.example.com/v1/items/{{item.id}}
    auth_type: bearer
    secret_store: vault
    secret_key: token-{n}
    parameters: {{since: "{{window.start:%Y-%m-%d}}", page_size: 100}}
  iteration:
    foreach: item
    items: [{{id: a}}, {{id: b}}, {{id: c}}]
    concurrency: 8
  pagination: {{type: cursor, cursor_path: meta.next, stop_when_empty_path: data}}
  retry: {{max_attempts: 5, backoff: exponential}}
  dedup: {{ignore_fields: [meta.generated_at]}}
"""


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=False, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    pullctl = str(Path(sys.executable).parent / "pullctl")
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.files):
            Path(tmp, f"source-{n:04d}.yaml").write_text(TEMPLATE.format(n=n, minute=n % 60, hours=1 + n % 6))
        check = subprocess.run([pullctl, "validate", tmp], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        validate = median_seconds([pullctl, "validate", tmp], args.runs)
    help_time = median_seconds([pullctl, "--help"], args.runs)
    print(f"{'what':<32} {'median s':>9} {'target s':>9}")
    print(f"{f'validate {args.files} files':<32} {validate:>9.3f} {'1.000':>9}")
    print(f"{'--help':<32} {help_time:>9.3f} {'0.300':>9}")


if __name__ == "__main__":
    main()
