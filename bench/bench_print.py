"""Printing speed: pages per second for a 40-bed ward pack and for 500 blank sheets, on one core.

Target (issue 2, issue 15 item 17): at least 150 pages/s, in process and through the command as
users run it (`fallbackkit print lab-request --blank 500`, a fresh process: start-up included).
Reported as the median of several runs (the machine is shared and noisy); CPU time is given too,
as wall time on a loaded machine measures the neighbours.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fallbackkit.generate import import_census, print_blank, print_ward
from fallbackkit.generate.sample import write_census
from fallbackkit.store import init_kit


def measure(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kit = init_kit(tmp / "kit", actor="bench")
        patients, meds = write_census(tmp / "census", {"W40": 40}, seed=11)
        import_census(kit, patients, meds, actor="bench")
        ward_rates, blank_rates, sizes = [], [], []
        for i in range(runs):
            start = time.perf_counter()
            result = print_ward(kit, "W40", tmp / f"ward{i}.pdf", actor="bench")
            ward_rates.append(len(result.sheets) / (time.perf_counter() - start))
            ward_pages = len(result.sheets)
            start = time.perf_counter()
            result = print_blank(kit, "lab-request", 500, tmp / f"blank{i}.pdf", actor="bench")
            blank_rates.append(len(result.sheets) / (time.perf_counter() - start))
            sizes.append(result.out_path.stat().st_size / len(result.sheets))
        kit.close()
        cli_wall, cli_cpu = [], []
        for i in range(runs):
            wall, cpu = _time_command([sys.executable, "-m", "fallbackkit", "--kit", str(tmp / "kit"), "--quiet",
                                       "print", "lab-request", "--blank", "500", "--out", str(tmp / f"cli{i}.pdf")])
            cli_wall.append(500 / wall)
            cli_cpu.append(500 / cpu)
    return {"ward_pages": ward_pages, "ward_pps": statistics.median(ward_rates),
            "blank_pps": statistics.median(blank_rates), "blank_kb_per_page": statistics.median(sizes) / 1024,
            "cli_pps": statistics.median(cli_wall), "cli_cpu_pps": statistics.median(cli_cpu)}


def _time_command(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one command run in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env={**os.environ})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    figures = measure(2 if args.quick else 5)
    print("== printing (one process, median of runs) ==")
    print(f"40-bed ward pack: {figures['ward_pages']} pages, {figures['ward_pps']:.0f} pages/s")
    print(f"500 blank lab requests: {figures['blank_pps']:.0f} pages/s, {figures['blank_kb_per_page']:.1f} KiB/page")
    print(f"`fallbackkit print lab-request --blank 500` (fresh process): {figures['cli_pps']:.0f} pages/s wall, "
          f"{figures['cli_cpu_pps']:.0f} pages/s of CPU time")
    print("target: >= 150 pages/s")


if __name__ == "__main__":
    main()
