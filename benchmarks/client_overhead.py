"""What the client adds to every token: ``iter_text`` + ``measure`` against the stand-in.

Run from the repository root::

    python benchmarks/client_overhead.py                 # 40 paced requests + CPU runs
    python benchmarks/client_overhead.py --requests 10   # a quick look

The stand-in's ``sagemaker-runtime`` server (:class:`common.local.runtime.RuntimeServer`, a
replay backend behind a TGI-image endpoint) runs in its own process on 127.0.0.1 and notes
``time.perf_counter_ns()`` right after it has written each token's ``PayloadPart`` frame to
the socket (``GET /_local/timings/{request_id}``; the first token's event goes out as two
frames cut inside its line, as SageMaker may cut it, and is noted after the second, so the
first token's figure includes decoding one more frame and joining the line). The client -- boto3's
``invoke_endpoint_with_response_stream``, then ``common.iter_text`` wrapped in
``common.measure``, exactly what the notebooks run -- notes the same clock (Linux
``CLOCK_MONOTONIC``, shared by both processes) when each piece of text is handed to the
caller. The difference is the latency the client side adds: loopback delivery, urllib3's
chunked reader, botocore's event-stream decoder, our SSE/JSON decoder and the metrics.

Two measurements:

1. *Added latency* -- paced requests (default 100 tokens/s, so that every frame travels on
   its own and the client waits for it, as with a real model): the median and p99 of the
   delay for the first token (what the client adds to TTFT) and for every token.
2. *Client CPU per token* -- long unpaced streams (2,000 tokens each): ``time.process_time``
   of this process (the server's CPU is in the other one) divided by the tokens, for boto3
   alone (iterating the raw events) and for boto3 + ``iter_text`` + ``measure``.

The table is printed and written to ``benchmarks/results/client_overhead.csv`` and ``.md``
with the command that produced it. This is a measurement, not a test: nothing here passes
or fails (the goal line says whether the median TTFT overhead is under 1 ms).

The other benchmarks import :func:`replay_server`, :func:`use_server` and
:func:`long_answer` from here.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.bench import markdown_table, write_rows_csv  # noqa: E402
from common.metrics import measure, percentile  # noqa: E402
from common.streaming import iter_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ENDPOINT = "bench-replay"
REGION = "us-east-1"
IMAGES = {
    "tgi": "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
           "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04",
    "lmi": "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130",
}
GOAL_US = 1000.0
PROMPT = "[INST] Write a short launch email for the AnyCloud Internet Service. [/INST]"
_SENTENCES = (
    "Say hello to the AnyCloud Internet Service, fast and simple from the very first day.",
    "Stream, work and play anywhere, from the living room to the garden office.",
    "Use code EARLYB1RD when you sign up to claim 20% off the first 3 months.",
    "Our friendly support team answers around the clock, in plain words.",
    "Plans start small and grow with you, with no surprise fees on the bill.",
)


# --------------------------------------------------------------------------- the stand-in


def long_answer(min_tokens: int) -> str:
    """Return an English answer that the replay backend cuts into at least ``min_tokens``
    Llama-like tokens (plain text: every token carries text)."""
    from common.local.backends import llama_tokens

    parts: list[str] = []
    index = 0
    while len(llama_tokens(" " + " ".join(parts))) < min_tokens:
        parts.append(_SENTENCES[index % len(_SENTENCES)])
        if index % len(_SENTENCES) == len(_SENTENCES) - 1:
            parts.append("\n\n")
        index += 1
    return " " + " ".join(parts)


def _serve(conn: Any, ttft_s: float, tokens_per_s: float, answer: str | None,
           container: str) -> None:
    """Child process: serve one endpoint from the stand-in's runtime server until told.

    It answers ``"produced"`` on ``conn`` with the ``perf_counter_ns`` times at which the
    backend produced each token of its latest generation; any other message stops it.
    """
    from common.local.backends import ReplayBackend
    from common.local.runtime import EndpointInfo, RuntimeServer

    class StampedReplay(ReplayBackend):
        """The replay backend, noting when each token leaves it (before any framing)."""

        latest: tuple[int, ...] = ()

        def generate(self, request: Any) -> Iterator[Any]:
            stamps: list[int] = []
            self.latest = stamps  # type: ignore[assignment]  # grows while it streams
            for token in super().generate(request):
                stamps.append(time.perf_counter_ns())
                yield token

    environment = {"MAX_INPUT_TOKENS": "4096", "MAX_TOTAL_TOKENS": "8192",
                   "OPTION_MAX_MODEL_LEN": "8192"}
    info = EndpointInfo(ENDPOINT, "InService", IMAGES[container], environment)
    backend = StampedReplay(ttft_s=ttft_s, tokens_per_s=tokens_per_s, answer=answer)
    server = RuntimeServer(lambda name: info if name == ENDPOINT else None, backend=backend)
    server.start()
    try:
        conn.send(server.url)
        while conn.recv() == "produced":
            conn.send(list(backend.latest))
    except EOFError:
        pass  # the parent closed its end: stop, as asked
    finally:
        server.stop()


@dataclass(frozen=True)
class ServerProcess:
    """The running stand-in server: its URL and its process id."""

    url: str
    pid: int
    conn: Any

    def produced_ns(self) -> list[int]:
        """When the backend produced each token of the latest generation (``perf_counter_ns``;
        meaningful only when requests run one at a time)."""
        self.conn.send("produced")
        return list(self.conn.recv())


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) that process ``pid`` has used, from ``/proc`` (Linux);
    ``None`` where ``/proc`` is not there."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return None
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def replay_server(*, ttft_s: float, tokens_per_s: float, answer: str | None = None,
                  container: str = "tgi") -> Iterator[ServerProcess]:
    """Run the stand-in's runtime server with a :class:`ReplayBackend` in its own process.

    One endpoint, :data:`ENDPOINT`, serves ``container``'s format (TGI 3.3.6 or LMI 0.38
    image); the backend waits ``ttft_s`` before the first token and then sends
    ``tokens_per_s`` (0: no pacing), replaying ``answer`` (None: its composed answer).

    Yields:
        A :class:`ServerProcess`: the URL (``http://127.0.0.1:PORT``) and the process id.

    Raises:
        RuntimeError: the server process died, or did not report its URL within 60 s.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child, ttft_s, tokens_per_s, answer,
                                                   container), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + 60
        while not parent.poll(0.1):
            if not process.is_alive():
                raise RuntimeError(f"the stand-in's runtime server process exited with "
                                   f"{process.exitcode} before it served (see its traceback)")
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in's runtime server did not start within 60 s")
        url = parent.recv()
        yield ServerProcess(url, process.pid, parent)
    finally:
        if process.is_alive():
            parent.send("stop")
            process.join(15)
        if process.is_alive():
            process.terminate()
            process.join(5)
        parent.close()


_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
          "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")


def use_server(url: str) -> None:
    """Point boto3's ``sagemaker-runtime`` (in this process) at ``url`` with dummy credentials,
    the way the stand-in's environment does (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``)."""
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.update({
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost",
    })


def runtime_client(url: str) -> Any:
    """boto3's ``sagemaker-runtime`` client for the stand-in at ``url``: no retries, a read
    timeout, enough pooled connections for the load benchmark."""
    import boto3
    from botocore.config import Config

    use_server(url)
    config = Config(read_timeout=60, connect_timeout=5, max_pool_connections=64,
                    retries={"total_max_attempts": 1})
    return boto3.client("sagemaker-runtime", region_name=REGION, config=config)


def payload(max_new_tokens: int, *, stream: bool = True) -> bytes:
    """The request body (the same for TGI and LMI): a Llama 2 prompt, greedy decoding,
    ``max_new_tokens``, streaming or not."""
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": max_new_tokens, "do_sample": False},
            "stream": stream}
    return json.dumps(body).encode()


def fetch_timings(url: str, request_id: str) -> dict[str, Any]:
    """The stand-in's frame timings of one request (``GET /_local/timings/{id}``)."""
    with urllib.request.urlopen(f"{url}/_local/timings/{request_id}", timeout=10) as answer:
        return json.loads(answer.read())


# --------------------------------------------------------------------------- measurements


@dataclass
class PacedRun:
    """One paced request: per text piece, the client's delay after the server's frame.

    Attributes:
        after_frame_us: text handed to the caller - the stand-in noted the frame written.
        after_token_us: text handed to the caller - the backend produced the token (this
            adds the server's framing and its socket write).
        client_ttft_s: TTFT as ``measure`` saw it (from just before the request was sent).
        server_ttft_s: the server's own: request received to first frame written.
    """

    after_frame_us: list[float]
    after_token_us: list[float]
    client_ttft_s: float
    server_ttft_s: float


def expected_text(answer: str, max_new_tokens: int) -> str:
    """The text of the first ``max_new_tokens`` tokens of ``answer``."""
    from common.local.backends import llama_tokens

    return "".join(text for _, text in llama_tokens(answer)[:max_new_tokens])


def text_token_indices(answer: str, max_new_tokens: int) -> list[int]:
    """The 1-based token indices (as the server counts them) of the tokens that carry text."""
    from common.local.backends import llama_tokens

    pieces = llama_tokens(answer)[:max_new_tokens]
    return [index for index, (_, text) in enumerate(pieces, start=1) if text]


def paced_request(client: Any, server: ServerProcess, answer: str, tokens: int,
                  container: str) -> PacedRun:
    """Send one streaming request and pair each piece of text with its token's server times.

    Raises:
        RuntimeError: the text or the frame count is not what the replay sent.
    """
    started = time.perf_counter_ns()
    response = client.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT, Body=payload(tokens),
        ContentType="application/json")
    request_id = response["ResponseMetadata"]["HTTPHeaders"]["x-local-request-id"]
    stream = measure(iter_text(response["Body"], container=container), start=started / 1e9)
    arrivals: list[int] = []
    pieces: list[str] = []
    for piece in stream:
        arrivals.append(time.perf_counter_ns())
        pieces.append(piece)
    timing = fetch_timings(server.url, request_id)
    produced = server.produced_ns()
    sent = dict((index, ns) for index, ns in timing["frames"])
    indices = text_token_indices(answer, tokens)
    if len(indices) != len(arrivals) or "".join(pieces) != expected_text(answer, tokens):
        raise RuntimeError(f"the client got {len(arrivals)} pieces of text, the replay sent "
                           f"{len(indices)} (or other text): pieces and frames cannot be paired")
    pairs = list(zip(arrivals, indices, strict=True))
    return PacedRun(
        after_frame_us=[(arrival - sent[index]) / 1000 for arrival, index in pairs],
        after_token_us=[(arrival - produced[index - 1]) / 1000 for arrival, index in pairs],
        client_ttft_s=stream.metrics.ttft_s or 0.0,
        server_ttft_s=(sent[indices[0]] - timing["received_ns"]) / 1e9,
    )


def cpu_per_token(client: Any, tokens: int, runs: int, container: str, *, decode: bool
                  ) -> tuple[list[float], list[dict[str, Any]]]:
    """Client CPU microseconds per token of ``runs`` unpaced ``tokens``-token streams.

    With ``decode`` the stream goes through ``iter_text`` + ``measure`` (the whole path);
    without it only boto3's events are iterated (the transport: HTTP, chunked reading,
    botocore's event-stream decoder) and kept.

    Returns:
        The per-run figures, and the events of the last run (empty with ``decode``).
    """
    results = []
    events: list[dict[str, Any]] = []
    for _ in range(runs):
        cpu = time.process_time()
        response = client.invoke_endpoint_with_response_stream(
            EndpointName=ENDPOINT, Body=payload(tokens),
            ContentType="application/json")
        if decode:
            count = sum(1 for _piece in measure(iter_text(response["Body"], container=container)))
        else:
            events = list(response["Body"])
            count = len(events)
        results.append((time.process_time() - cpu) * 1e6 / max(count, 1))
    return results, events


def decode_cpu_per_token(events: list[dict[str, Any]], runs: int, container: str
                         ) -> list[float]:
    """CPU microseconds per token of ``iter_text`` + ``measure`` alone, over recorded events."""
    results = []
    for _ in range(runs):
        cpu = time.process_time()
        count = sum(1 for _piece in measure(iter_text(events, container=container)))
        results.append((time.process_time() - cpu) * 1e6 / max(count, 1))
    return results


# --------------------------------------------------------------------------- report


def _row(name: str, samples: int, median: float, p99: float | None, note: str) -> dict[str, str]:
    return {"measure": name, "samples": str(samples), "median_us": f"{median:.0f}",
            "p99_us": "" if p99 is None else f"{p99:.0f}", "note": note}


def publish(name: str, rows: list[dict[str, str]], lines: list[str]) -> None:
    """Print the table and ``lines``; write ``results/{name}.csv`` and ``.md`` with both."""
    print()
    print(markdown_table(rows))
    print()
    print("\n".join(lines))
    write_rows_csv(rows, RESULTS / f"{name}.csv")
    (RESULTS / f"{name}.md").write_text("\n".join([markdown_table(rows), "", *lines]) + "\n")


def command_line() -> str:
    """The command that is running, as a shell line (for the results files)."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


def machine() -> str:
    """One line describing the machine and the library versions."""
    import boto3
    import botocore

    return (f"Python {platform.python_version()}, boto3 {boto3.__version__}, botocore "
            f"{botocore.__version__}, {platform.machine()}, {os.cpu_count()} CPUs "
            f"(load average {os.getloadavg()[0]:.1f} at the end)")


def main(argv: list[str] | None = None) -> int:
    """Run both measurements, print the table and write the results; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="paced requests (40)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per paced request (64)")
    parser.add_argument("--tokens-per-s", type=float, default=100.0,
                        help="the paced requests' token rate (100)")
    parser.add_argument("--ttft", type=float, default=0.05, help="replay TTFT in s (0.05)")
    parser.add_argument("--cpu-tokens", type=int, default=2000,
                        help="tokens per unpaced CPU-time stream (2000)")
    parser.add_argument("--cpu-runs", type=int, default=5, help="unpaced streams each way (5)")
    parser.add_argument("--container", choices=sorted(IMAGES), default="tgi")
    args = parser.parse_args(argv)

    answer = long_answer(max(args.tokens, args.cpu_tokens))
    print(f"Paced: {args.requests} requests x {args.tokens} tokens at {args.tokens_per_s:g} "
          f"tokens/s ({args.container}) ...", flush=True)
    with replay_server(ttft_s=args.ttft, tokens_per_s=args.tokens_per_s, answer=answer,
                       container=args.container) as server:
        client = runtime_client(server.url)
        paced_request(client, server, answer, args.tokens, args.container)  # warm-up
        runs = [paced_request(client, server, answer, args.tokens, args.container)
                for _ in range(args.requests)]
    print(f"Unpaced: {args.cpu_runs} x {args.cpu_tokens} tokens each way ...", flush=True)
    with replay_server(ttft_s=0.0, tokens_per_s=0.0, answer=answer,
                       container=args.container) as server:
        client = runtime_client(server.url)
        cpu_per_token(client, args.cpu_tokens, 1, args.container, decode=True)  # warm-up
        raw, events = cpu_per_token(client, args.cpu_tokens, args.cpu_runs, args.container,
                                    decode=False)
        full, _ = cpu_per_token(client, args.cpu_tokens, args.cpu_runs, args.container,
                                decode=True)
    decode = decode_cpu_per_token(events, args.cpu_runs, args.container)

    first = [run.after_frame_us[0] for run in runs]
    every = [delay for run in runs for delay in run.after_frame_us]
    first_token = [run.after_token_us[0] for run in runs]
    every_token = [delay for run in runs for delay in run.after_token_us]
    rows = [
        _row("added latency, first token (TTFT overhead)", len(first),
             percentile(first, 50), percentile(first, 99),
             "text handed to the caller - the stand-in wrote the frame"),
        _row("added latency, every token", len(every), percentile(every, 50),
             percentile(every, 99), "same, for every piece of text"),
        _row("token to reader, first token", len(first_token), percentile(first_token, 50),
             percentile(first_token, 99), "from the backend's token: adds framing and write"),
        _row("token to reader, every token", len(every_token), percentile(every_token, 50),
             percentile(every_token, 99), "same, for every piece of text"),
        _row("client CPU per token, boto3 events only", args.cpu_runs * args.cpu_tokens,
             statistics.median(raw), None, "HTTP, chunked reading, event-stream decoding"),
        _row("client CPU per token, iter_text + measure only", args.cpu_runs * args.cpu_tokens,
             statistics.median(decode), None, "over recorded events, no network"),
        _row("client CPU per token, boto3 + iter_text + measure",
             args.cpu_runs * args.cpu_tokens, statistics.median(full), None,
             "the notebooks' whole path, live"),
    ]
    median_first = percentile(first, 50)
    verdict = "met" if median_first < GOAL_US else "NOT met"
    lines = [
        f"Goal: under {GOAL_US:.0f} us added to TTFT at the median -- {verdict} "
        f"({median_first:.0f} us).",
        f"Context: TTFT seen by the client, median "
        f"{statistics.median(r.client_ttft_s for r in runs) * 1000:.1f} ms; the server's own "
        f"(request received to first frame written) "
        f"{statistics.median(r.server_ttft_s for r in runs) * 1000:.1f} ms "
        f"(replay TTFT {args.ttft * 1000:.0f} ms).",
        f"Paced: {args.requests} requests x {args.tokens} tokens at {args.tokens_per_s:g} "
        f"tokens/s; unpaced: {args.cpu_runs} x {args.cpu_tokens} tokens; container format "
        f"{args.container}; server in its own process on 127.0.0.1.",
        f"Machine: {machine()}.",
        f"Command: `{command_line()}`",
    ]
    publish("client_overhead", rows, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
