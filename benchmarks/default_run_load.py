"""Wall time of the default run (`python recipes/train.py --output_dir X`) on an idle and on a busy machine.

    python benchmarks/default_run_load.py                         # this checkout, idle then busy
    python benchmarks/default_run_load.py --code /tmp/main-copy   # another copy of the code (e.g. `git archive main`)

Each run starts from an empty feature cache and Hugging Face home (what a first run on a fresh clone does) and
with `OMP_NUM_THREADS` unset (what a user who never heard of it has). "Busy" starts one spinning Python process per
core (`while True: pass`) before the run and ends them, by their process ids, after it. Prints one JSON line per
run; the numbers in docs/benchmarks.md ("Threads on a busy machine") come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(code: Path, busy: int, timeout: float, extra: list[str]) -> dict:
    load_before = os.getloadavg()[0]  # other users' load: a shared machine is never idle
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        with tempfile.TemporaryDirectory(prefix="default-run-") as tmp:
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTHONPATH")}
            env.update(EMODNA_HF_CACHE=f"{tmp}/cache", HF_HOME=f"{tmp}/hf_home", HF_HUB_OFFLINE="1",
                       PYTHONPATH=str(code))
            started, cpu_before = time.perf_counter(), _children_cpu_s()
            try:
                completed = subprocess.run(
                    [sys.executable, str(code / "recipes" / "train.py"), "--output_dir", f"{tmp}/out", *extra],
                    cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
                seconds, returncode = time.perf_counter() - started, completed.returncode
                cpu = _children_cpu_s() - cpu_before  # the run's own CPU time (spin-waiting threads included)
                summary = [line for line in completed.stdout.splitlines() if "target" in line and "UAR" in line]
            except subprocess.TimeoutExpired:
                seconds, returncode, summary = time.perf_counter() - started, None, ["timed out"]
                cpu = None
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    return {"code": str(code), "busy_processes": busy, "loadavg_1min_before": round(load_before, 2),
            "wall_s": round(seconds, 1), "cpu_s": None if cpu is None else round(cpu, 1), "returncode": returncode,
            "summary": summary[-1].strip() if summary else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=REPO, help="Repository copy whose recipes/train.py runs.")
    parser.add_argument("--loads", default="idle,busy", help="idle, busy or both (comma-separated), in order.")
    parser.add_argument("--timeout", type=float, default=1800.0, help="Seconds before a run is given up.")
    args, extra = parser.parse_known_args()
    for load in args.loads.split(","):
        busy = os.cpu_count() if load == "busy" else 0
        print(json.dumps({"load": load, **run_once(args.code.resolve(), busy, args.timeout, extra)}), flush=True)


if __name__ == "__main__":
    main()
