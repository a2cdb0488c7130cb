"""Concurrent streams against the stand-in: threads vs. one asyncio loop, at 32-256 streams.

Run from the repository root::

    python benchmarks/load.py                           # 32, 128, 256 streams at 60 tokens/s
    python benchmarks/load.py --concurrency 8,64 --engines asyncio --profile

It starts the stand-in's ``sagemaker-runtime`` server in its own process with a replay
backend at a fixed pace (``--ttft``, ``--tokens-per-s``), and runs the project's load tool,
:mod:`common.bench` (the same code as ``python -m common.bench --endpoint NAME``), against it
from this one client process, with each engine at each concurrency level:

* ``threads`` -- the old engine: boto3, one thread per open stream;
* ``asyncio`` -- the load tool's default: aiobotocore, every stream on one event loop.

Each level sends ``--requests-per-stream`` requests per open stream, each asking for
``--max-new-tokens`` tokens. Per engine and level the table gives the slowest stream's
decode rate against the pace, TTFT p50/p95, errors, and the client's CPU: seconds of CPU
(this process, ``time.process_time``) per stream, and its share of one core over the level
(the server's share too). It is printed and written to ``benchmarks/results/load.csv`` and
``load.md`` (with the verdict, the machine and the command); the chart goes to ``load.png``.

The verdict: every stream must decode at no less than 90% of the configured pace
(``stream_tok_s_min`` >= 0.9 x ``--tokens-per-s``); the replay sends on a fixed schedule, so
a slower stream means the server or the client fell behind. With ``--profile`` the client
side of the busiest asyncio level runs under ``cProfile`` and its top functions are printed.
This is a measurement, not a test; on a shared machine, run it twice and compare.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
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

LEVELS = "32,128,256"
TOLERANCE = 0.9


def bench_arguments(args: argparse.Namespace, level: int, engine: str) -> argparse.Namespace:
    """The load tool's own arguments for one level (its parser checks them)."""
    return bench.build_parser().parse_args([
        "--endpoint", ENDPOINT, "--container", "tgi", "--region", REGION,
        "--concurrency", str(level), "--requests", str(level * args.requests_per_stream),
        "--max-new-tokens", str(args.max_new_tokens), "--no-progress", "--engine", engine,
    ])


@dataclass
class Level:
    """One level's report from the load tool, and the CPU both sides used meanwhile."""

    engine: str
    report: bench.LevelReport
    client_cpu_s: float
    client_cpu: float
    server_cpu: float | None

    def row(self, pace: float) -> dict[str, str]:
        """The table row: the load tool's figures that matter here, and the CPU."""
        report = self.report
        slowest = report.stream_tokens_per_s_min
        full = report.row()
        return {
            "engine": self.engine,
            "concurrency": str(report.concurrency),
            "requests": str(report.requests),
            "errors": str(report.errors),
            "stream_tok_s_min": full["stream_tok_s_min"],
            "slowest_vs_pace": "" if slowest is None else f"{slowest / pace:.0%}",
            "ttft_p50_ms": full["ttft_p50_ms"],
            "ttft_p95_ms": full["ttft_p95_ms"],
            "client_cpu_ms_per_stream": f"{self.client_cpu_s / report.requests * 1000:.1f}",
            "client_cpu_share": f"{self.client_cpu:.0%}",
            "server_cpu_share": "" if self.server_cpu is None else f"{self.server_cpu:.0%}",
            "wall_s": full["wall_s"],
        }


def run_level(args: argparse.Namespace, level: int, engine: str, server_pid: int) -> Level:
    """Run one level with the load tool; note the CPU each side used."""
    quiet = io.StringIO()  # the table is printed once, for every level, below
    wall, cpu = time.perf_counter(), time.process_time()
    server = process_cpu_s(server_pid)
    arguments = bench_arguments(args, level, engine)
    if args.profile and engine == "asyncio" and level == max(args.levels):
        report = profiled(bench.run, arguments, out=quiet)[0]
    else:
        report = bench.run(arguments, out=quiet)[0]
    wall = time.perf_counter() - wall
    client_cpu_s = time.process_time() - cpu
    server_after = process_cpu_s(server_pid)
    server_cpu = None if server is None or server_after is None else (server_after - server) / wall
    return Level(engine, report, client_cpu_s, client_cpu_s / wall, server_cpu)


def profiled(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` under ``cProfile`` (the asyncio engine runs on this thread), then
    print the top 20 functions by their own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        result = function(*args, **kwargs)
    finally:
        profiler.disable()
    stats = io.StringIO()
    pstats.Stats(profiler, stream=stats).sort_stats("tottime").print_stats(20)
    print(f"\nClient profile, top 20 by own time:\n{stats.getvalue()}")
    return result


def verdict(levels: list[Level], pace: float) -> tuple[dict[str, bool], list[str]]:
    """Per engine, whether every stream kept within 10% of ``pace``; one line per level."""
    kept: dict[str, bool] = {}
    lines = []
    for level in levels:
        report = level.report
        slowest = report.stream_tokens_per_s_min
        ok = report.errors == 0 and slowest is not None and slowest >= TOLERANCE * pace
        kept[level.engine] = kept.get(level.engine, True) and ok
        shown = "-" if slowest is None else f"{slowest:.1f}"
        server = "?" if level.server_cpu is None else f"{level.server_cpu:.0%}"
        lines.append(f"{level.engine} at {report.concurrency} streams: slowest stream {shown} "
                     f"tokens/s, {report.errors} errors -> "
                     f"{'kept the pace' if ok else 'FELL BEHIND'} (client CPU "
                     f"{level.client_cpu_s / report.requests * 1000:.1f} ms per stream, "
                     f"{level.client_cpu:.0%} of a core; server {server})")
    return kept, lines


def plot(levels: list[Level], path: Path, pace: float) -> None:
    """Slowest stream vs. the pace, TTFT p95 and client CPU per stream, per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for engine, style in (("threads", "s--"), ("asyncio", "o-")):
        mine = [level for level in levels if level.engine == engine]
        if not mine:
            continue
        xs = [level.report.concurrency for level in mine]
        axes[0].plot(xs, [level.report.stream_tokens_per_s_min or 0 for level in mine], style,
                     label=engine)
        axes[1].plot(xs, [(level.report.ttft_p95_s or 0) * 1000 for level in mine], style,
                     label=engine)
        axes[2].plot(xs, [level.client_cpu_s / level.report.requests * 1000 for level in mine],
                     style, label=engine)
    axes[0].axhline(TOLERANCE * pace, color="grey", linestyle=":", label="90% of the pace")
    titles = ("slowest stream (tokens/s)", "TTFT p95 (ms)", "client CPU per stream (ms)")
    for axis, title in zip(axes, titles, strict=True):
        axis.set_xlabel("concurrent streams")
        axis.set_title(title, fontsize=10)
        axis.legend(fontsize=8)
    fig.suptitle(f"one client process vs. the stand-in at {pace:g} tokens/s per stream")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run every level with each engine, print the table and the verdict, write CSV/MD/PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", dest="levels", type=bench.parse_levels,
                        default=bench.parse_levels(LEVELS), help=f"levels ({LEVELS})")
    parser.add_argument("--engines", default="threads,asyncio",
                        help="comma-separated engines to compare (threads,asyncio)")
    parser.add_argument("--ttft", type=float, default=0.06, help="replay TTFT in s (0.06)")
    parser.add_argument("--tokens-per-s", type=float, default=60.0,
                        help="replay pace, tokens/s per stream (60)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="per request (128)")
    parser.add_argument("--requests-per-stream", type=int, default=2,
                        help="requests per level = this x the level (2)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the client at the busiest asyncio level")
    args = parser.parse_args(argv)
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    if not engines or any(name not in bench.ENGINES for name in engines):
        parser.error(f"--engines takes names from {', '.join(bench.ENGINES)}")
    if args.tokens_per_s <= 0:
        parser.error("--tokens-per-s must be > 0: the check compares streams with the pace")

    answer = long_answer(args.max_new_tokens)
    levels: list[Level] = []
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with replay_server(ttft_s=args.ttft, tokens_per_s=args.tokens_per_s,
                       answer=answer) as server:
        use_server(server.url)
        for engine in engines:  # warm up: imports, service models, first connection
            bench.run(bench_arguments(args, 1, engine), out=io.StringIO())
        for level in args.levels:
            for engine in engines:
                print(f"{engine} at {level} streams: {level * args.requests_per_stream} "
                      "requests ...", flush=True)
                levels.append(run_level(args, level, engine, server.pid))
    wall = time.perf_counter() - started

    pace = args.tokens_per_s
    rows = [level.row(pace) for level in levels]
    kept, lines = verdict(levels, pace)
    table = bench.markdown_table(rows)
    errors = [f"{level.engine} at {level.report.concurrency}: {message}" for level in levels
              for message in level.report.error_messages]
    summary = [
        *[f"Every stream within 10% of the pace ({TOLERANCE * pace:.1f} tokens/s or more), "
          f"{engine}: {'yes' if kept[engine] else 'NO'}." for engine in engines],
        *[f"- {line}" for line in lines],
        *errors,
        "",
        f"Pace: replay {args.ttft * 1000:.0f} ms to first token, {pace:g} tokens/s per "
        f"stream; {args.max_new_tokens} new tokens per request; {args.requests_per_stream} "
        "requests per open stream at each level; TGI format; the stand-in's runtime server "
        "in its own process on 127.0.0.1, the load tool (common.bench) in this one; both "
        "engines keep one pooled connection per open stream. Engines: threads = boto3, a "
        "thread per stream; asyncio = aiobotocore, one event loop. "
        f"Wall time {wall:.1f} s.",
        "Columns: stream_tok_s_min is the slowest stream's decode rate (tokens after the first "
        "/ time from the first to the last) and slowest_vs_pace that over the pace; "
        "client_cpu_ms_per_stream is this process's CPU time over the level (client set-up "
        "included; imports and the first connection were warmed up before) divided by its "
        "requests; the shares are of one core over the level's wall time.",
        f"Machine: {machine()}; load average {load_before:.1f} before the run -- the machine "
        "is shared, so other work competes for the 2 cores (run it twice to see the noise).",
        f"Command: `{command_line()}`",
    ]
    print()
    print(table)
    print()
    print("\n".join(summary))
    RESULTS.mkdir(parents=True, exist_ok=True)
    bench.write_rows_csv(rows, RESULTS / "load.csv")
    plot(levels, RESULTS / "load.png", pace)
    (RESULTS / "load.md").write_text("\n".join([table, "", *summary]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
