"""Concurrent streams against the stand-in: do the server and the client keep the pace?

Run from the repository root::

    python benchmarks/load.py                          # 1, 8, 32 streams at 60 tokens/s
    python benchmarks/load.py --concurrency 1,64 --tokens-per-s 100 --profile

It starts the stand-in's ``sagemaker-runtime`` server in its own process with a replay
backend at a fixed pace (``--ttft``, ``--tokens-per-s``), and runs the project's load tool,
:mod:`common.bench` (the same code as ``python -m common.bench --endpoint NAME``), against it
at each concurrency level: ``--requests-per-stream`` requests per open stream, each asking
for ``--max-new-tokens`` tokens. The load tool's table (TTFT p50/p95, inter-token latency
p50/p95, tokens/s per stream and in total, errors) is printed and written to
``benchmarks/results/load.csv``, its chart to ``load.png``, and both with the verdict and the
command to ``load.md``.

The verdict: every stream must decode at no less than 90% of the configured pace
(``stream_tok_s_min`` >= 0.9 x ``--tokens-per-s``); the replay sends on a fixed schedule, so
a slower stream means the server or the client fell behind. Each level also notes how much
of one CPU core the client (this process) and the server process used. With ``--profile``
the client side of the busiest level runs under ``cProfile`` (one profiler per thread,
merged) and its top functions are printed, to find out where the time goes.
This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_overhead import (
    ENDPOINT,
    REGION,
    RESULTS,
    command_line,
    long_answer,
    machine,
    process_cpu_s,
    replay_server,
    use_server,
)

from common import bench

LEVELS = "1,8,32"
TOLERANCE = 0.9


def bench_arguments(args: argparse.Namespace, level: int) -> argparse.Namespace:
    """The load tool's own arguments for one level (its parser checks them)."""
    return bench.build_parser().parse_args([
        "--endpoint", ENDPOINT, "--container", "tgi", "--region", REGION,
        "--concurrency", str(level), "--requests", str(level * args.requests_per_stream),
        "--max-new-tokens", str(args.max_new_tokens), "--no-progress",
    ])


@dataclass
class Level:
    """One level's report from the load tool, and the CPU both sides used meanwhile."""

    report: bench.LevelReport
    client_cpu: float
    server_cpu: float | None


def run_level(args: argparse.Namespace, level: int, server_pid: int) -> Level:
    """Run one level with the load tool; note the CPU share of a core each side used."""
    quiet = io.StringIO()  # the table is printed once, for every level, below
    wall, cpu = time.perf_counter(), time.process_time()
    server = process_cpu_s(server_pid)
    if args.profile and level == max(args.levels):
        report = profiled(bench.run, bench_arguments(args, level), out=quiet)[0]
    else:
        report = bench.run(bench_arguments(args, level), out=quiet)[0]
    wall = time.perf_counter() - wall
    client_cpu = (time.process_time() - cpu) / wall
    server_after = process_cpu_s(server_pid)
    server_cpu = None if server is None or server_after is None else (server_after - server) / wall
    return Level(report, client_cpu, server_cpu)


def profiled(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` with one ``cProfile`` profiler per thread (the load tool's stream
    threads included), then print the merged top 20 functions by their own time."""
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(*_: Any) -> None:
        sys.setprofile(None)  # this thread only; later threads still get the hook
        profiler = cProfile.Profile()
        with lock:
            profilers.append(profiler)
        profiler.enable()

    main = cProfile.Profile()
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        result = function(*args, **kwargs)
    finally:
        main.disable()
        threading.setprofile(None)
        for profiler in profilers:
            profiler.disable()
    stats = io.StringIO()
    merged = pstats.Stats(main, stream=stats)
    for profiler in profilers:
        merged.add(profiler)
    merged.sort_stats("tottime").print_stats(20)
    print(f"\nClient profile ({len(profilers)} stream threads + the main one), top 20 by own "
          f"time:\n{stats.getvalue()}")
    return result


def verdict(levels: list[Level], pace: float) -> tuple[bool, list[str]]:
    """Whether every stream kept within 10% of ``pace``, and one line per level."""
    lines = []
    kept = True
    for level in levels:
        report = level.report
        slowest = report.stream_tokens_per_s_min
        ok = report.errors == 0 and slowest is not None and slowest >= TOLERANCE * pace
        kept = kept and ok
        shown = "-" if slowest is None else f"{slowest:.1f}"
        server = "?" if level.server_cpu is None else f"{level.server_cpu:.0%}"
        lines.append(f"concurrency {report.concurrency}: slowest stream {shown} tokens/s, "
                     f"{report.errors} errors -> {'kept the pace' if ok else 'FELL BEHIND'} "
                     f"(CPU of one core: client {level.client_cpu:.0%}, server {server})")
    return kept, lines


def main(argv: list[str] | None = None) -> int:
    """Run every level, print the table and the verdict, write CSV/MD/PNG; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", dest="levels", type=bench.parse_levels,
                        default=bench.parse_levels(LEVELS), help=f"levels ({LEVELS})")
    parser.add_argument("--ttft", type=float, default=0.06, help="replay TTFT in s (0.06)")
    parser.add_argument("--tokens-per-s", type=float, default=60.0,
                        help="replay pace, tokens/s per stream (60)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="per request (128)")
    parser.add_argument("--requests-per-stream", type=int, default=2,
                        help="requests per level = this x the level (2)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the client at the busiest level")
    args = parser.parse_args(argv)
    if args.tokens_per_s <= 0:
        parser.error("--tokens-per-s must be > 0: the check compares streams with the pace")

    answer = long_answer(args.max_new_tokens)
    levels = []
    started = time.perf_counter()
    with replay_server(ttft_s=args.ttft, tokens_per_s=args.tokens_per_s,
                       answer=answer) as server:
        use_server(server.url)
        for level in args.levels:
            print(f"concurrency {level}: {level * args.requests_per_stream} requests ...",
                  flush=True)
            levels.append(run_level(args, level, server.pid))
    wall = time.perf_counter() - started

    reports = [level.report for level in levels]
    kept, lines = verdict(levels, args.tokens_per_s)
    table = bench.format_table(reports)
    errors = [f"concurrency {r.concurrency} error: {m}" for r in reports
              for m in r.error_messages]
    summary = [
        f"Every stream within 10% of the pace ({TOLERANCE * args.tokens_per_s:.1f} tokens/s "
        f"or more): {'yes' if kept else 'NO'}.",
        *[f"- {line}" for line in lines],
        *errors,
        "",
        f"Pace: replay {args.ttft * 1000:.0f} ms to first token, {args.tokens_per_s:g} "
        f"tokens/s per stream; {args.max_new_tokens} new tokens per request; "
        f"{args.requests_per_stream} requests per open stream at each level; TGI format; the "
        f"stand-in's runtime server in its own process on 127.0.0.1; the client is "
        f"common.bench (boto3, one thread per stream). Wall time {wall:.1f} s.",
        "Columns: times in ms; stream_tok_s is each stream's decode rate (tokens after the "
        "first / time from the first to the last); total_tok_s is every token of the level "
        "over its wall time.",
        f"Machine: {machine()}.",
        f"Command: `{command_line()}`",
    ]
    print()
    print(table)
    print()
    print("\n".join(summary))
    RESULTS.mkdir(parents=True, exist_ok=True)
    bench.write_csv(reports, RESULTS / "load.csv")
    bench.plot(reports, RESULTS / "load.png",
               f"local stand-in at {args.tokens_per_s:g} tokens/s per stream")
    (RESULTS / "load.md").write_text("\n".join([table, "", *summary]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
