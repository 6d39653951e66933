"""Run every benchmark (bench/bench_*.py) and print their figures. `make bench`.

Benchmarks print medians and ratios; the machines are shared, so read them as such. Pass --quick
for a short run.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    extra = sys.argv[1:]
    here = Path(__file__).parent
    failed = []
    for script in sorted(here.glob("bench_*.py")):
        print(f"\n##### {script.name} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(script), *extra])
        print(f"##### {script.name}: {'ok' if done.returncode == 0 else 'FAILED'} "
              f"in {time.perf_counter() - start:.0f} s", flush=True)
        if done.returncode:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
