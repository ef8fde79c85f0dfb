"""
`predict_hdlm.py` end to end on DBpedia-length texts: rows per second for each weights' dtype and process count.

    python bench/bench_predict.py --model_name_or_path /work/ckpt/default --num_rows 10000 --processes 1 2

The input is the texts of `data/dbpedia/*.jsonl` (labels dropped), shuffled and repeated to `--num_rows` rows. Each
configuration runs the script as a fresh command (`accelerate launch --multi_gpu --num_processes N` for N > 1, one
thread a process; one process takes `--threads`), timed from start to the written file, model loading included, in
wall time and in CPU time (user + system of all its processes: what it costs, less sensitive to a shared machine).
The paths of every run are compared with the first run's.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    """CPU time (user + system) of this process's finished children: what a run costs, however loaded the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_input(path: Path, num_rows: int, seed: int) -> None:
    texts = [
        json.loads(line)["text"] for file in sorted((ROOT / "data/dbpedia").glob("*.jsonl")) for line in file.open()
    ]
    random.Random(seed).shuffle(texts)
    rows = [{"id": f"row-{index}", "text": texts[index % len(texts)]} for index in range(num_rows)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--num_rows", type=int, default=10_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["auto"])
    parser.add_argument("--rounds", type=int, default=1, help="Run every configuration this many times, in turn.")
    parser.add_argument("--threads", type=int, default=2, help="Threads of a single process.")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="Further predict_hdlm.py flags.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        input_file = Path(folder) / "input.jsonl"
        build_input(input_file, args.num_rows, seed=0)
        print(f"{args.num_rows} rows, load before: {os.getloadavg()[0]:.2f}\n")
        print("| dtype | processes | wall s | rows/s | CPU s | CPU ms/row | load at start | same paths as run 1 |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        first = None
        configurations = [(dtype, processes) for dtype in args.dtypes for processes in args.processes]
        for dtype, processes in configurations * args.rounds:
            output_file = Path(folder) / "output.jsonl"
            launcher = [sys.executable]
            if processes > 1:
                launcher += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
            threads = args.threads if processes == 1 else 1
            command = [*launcher, str(ROOT / "predict_hdlm.py"), "--model_name_or_path", args.model_name_or_path,
                       "--input_file", str(input_file), "--output_file", str(output_file), "--dtype", dtype,
                       *args.extra]  # fmt: skip
            load = os.getloadavg()[0]
            start, used = time.perf_counter(), cpu_seconds()
            subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            seconds, used = time.perf_counter() - start, cpu_seconds() - used
            paths = [json.loads(line)["path"] for line in output_file.open()]
            output_file.unlink()
            first = first or paths
            same = sum(a == b for a, b in zip(paths, first)) / len(paths)
            rate = args.num_rows / seconds
            per_row = 1000 * used / len(paths)
            cells = [dtype, processes, f"{seconds:.1f}", f"{rate:.1f}", f"{used:.1f}", f"{per_row:.0f}"]
            print(f"| {' | '.join(map(str, cells))} | {load:.2f} | {100 * same:.1f} % |")
        print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
