"""Cancel latency: from Stop to the stand-in's last token, through boto3 and through the relay.

Run from the repository root::

    python benchmarks/cancel_latency.py                  # 30 stops per path at 60 tokens/s
    python benchmarks/cancel_latency.py --stops 10 --tokens-per-s 20

The stand-in's ``sagemaker-runtime`` server runs in its own process (as in the other
benchmarks) with the replay backend paced like a 7B model, and notes
``time.perf_counter_ns()`` after it writes each token's frame (``/_local/timings``). The
client streams a long answer and presses Stop at a random moment 0.2-0.6 s after its first
token, noting the same clock (Linux ``CLOCK_MONOTONIC``, shared by both processes):

* **boto3 + show_stream** -- the notebook's path: ``common.show_stream(..., stop=event)``
  reads in its worker thread; ``event.set()`` is the Stop. The stream is closed by the
  reader after the token in flight (or at once if the read was blocked, by shutting the
  socket down).
* **relay (SSE)** -- ``python -m common.chat serve``'s app (aiohttp + aiobotocore, in this
  process) relaying to an aiohttp client; Stop is the browser going away (the client closes
  its response), which cancels the relay's handler and closes its SageMaker stream.

Figures per path: **Stop to last token** (the stand-in's last frame written minus the Stop;
0 when no frame followed the Stop), **tokens after Stop**, and **Stop to generation ended**
(the stand-in's request finished). The stand-in checks for a closed connection before each
token, as TGI and DJL Serving do, so the floor is one token's time (1/pace).

The table is printed and written to ``benchmarks/results/cancel_latency.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from client_overhead import (  # noqa: E402
    ENDPOINT,
    REGION,
    command_line,
    fetch_timings,
    long_answer,
    machine,
    payload,
    publish,
    replay_server,
    runtime_client,
)

import common  # noqa: E402
from common.metrics import percentile  # noqa: E402


def _last_request_id(url: str) -> str:
    with urllib.request.urlopen(f"{url}/_local/requests", timeout=10) as answer:
        return json.loads(answer.read())[-1]["request_id"]


def _wait_done(url: str, request_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        timings = fetch_timings(url, request_id)
        if timings.get("done_ns") is not None or time.monotonic() > deadline:
            return timings
        time.sleep(0.01)


def _figures(timings: dict[str, Any], stop_ns: int) -> tuple[float, int, float | None]:
    frames = [ns for _index, ns in timings["frames"]]
    after = [ns for ns in frames if ns > stop_ns]
    last_ms = (max(after) - stop_ns) / 1e6 if after else 0.0
    done = timings.get("done_ns")
    ended_ms = (done - stop_ns) / 1e6 if done is not None else None
    return last_ms, len(after), ended_ms


def stop_through_boto3(client: Any, url: str, delay_s: float) -> tuple[float, int, float | None]:
    """One stop on the notebook's path; returns the three figures."""
    response = client.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT, Body=payload(4000), ContentType="application/json")
    request_id = response["ResponseMetadata"]["HTTPHeaders"]["x-local-request-id"]
    stop = threading.Event()
    stamp: list[int] = []
    tokens = common.iter_tokens(response["Body"], container="tgi")

    def press_stop() -> None:
        deadline = time.monotonic() + 10
        while not tokens.text and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay_s)
        stamp.append(time.perf_counter_ns())
        stop.set()

    presser = threading.Thread(target=press_stop)
    presser.start()
    # The TokenStream itself goes to show_stream, so that the stop can close its body.
    result = _quiet_show(tokens, stop)
    presser.join()
    assert result.stopped, "the stream ended before the Stop: use a longer answer"
    return _figures(_wait_done(url, request_id), stamp[0])


def _quiet_show(tokens: Any, stop: threading.Event) -> Any:
    """``show_stream`` in print mode with its printing sent nowhere."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return common.show_stream(tokens, mode="print", stop=stop)


async def stops_through_relay(url: str, delays: list[float]
                              ) -> list[tuple[float, int, float | None]]:
    """Stops on the relay's path (one relay app, one aiohttp client, this event loop)."""
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer

    from common.chat.server import RelaySettings, build_app

    settings = RelaySettings(endpoint=ENDPOINT, container="tgi", max_input_tokens=None,
                             max_total_tokens=8192, max_new_tokens=4000)
    server = TestServer(build_app(settings))  # handler cancellation on, as `serve` runs it
    await server.start_server()
    results = []
    try:
        async with ClientSession() as session:
            for delay in delays:
                origin = str(server.make_url("")).rstrip("/")
                body = {"messages": [{"role": "user", "content": "Write a launch email."}]}
                response = await session.post(server.make_url("/api/chat"), json=body,
                                              headers={"Origin": origin})
                first_token_at = None
                async for chunk in response.content.iter_any():
                    if b"event: token" in chunk and first_token_at is None:
                        first_token_at = time.monotonic()
                    if first_token_at is not None and \
                            time.monotonic() - first_token_at >= delay:
                        break
                stop_ns = time.perf_counter_ns()
                response.close()  # the browser goes away
                request_id = _last_request_id(url)
                await asyncio.sleep(0)
                timings = await asyncio.to_thread(_wait_done, url, request_id)
                results.append(_figures(timings, stop_ns))
    finally:
        await server.close()
    return results


def _rows(path: str, figures: list[tuple[float, int, float | None]]) -> dict[str, str]:
    last = sorted(f[0] for f in figures)
    after = [f[1] for f in figures]
    ended = sorted(f[2] for f in figures if f[2] is not None)
    return {
        "path": path, "stops": str(len(figures)),
        "stop to last token p50 (ms)": f"{percentile(last, 50):.1f}",
        "p95 (ms)": f"{percentile(last, 95):.1f}",
        "max (ms)": f"{last[-1]:.1f}",
        "tokens after stop (max)": str(max(after)),
        "stop to generation ended p50 (ms)": f"{percentile(ended, 50):.1f}" if ended else "-",
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stops", type=int, default=30, help="stops per path")
    parser.add_argument("--tokens-per-s", type=float, default=60.0, help="the stand-in's pace")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    delays = [rng.uniform(0.2, 0.6) for _ in range(args.stops)]
    with replay_server(ttft_s=0.06, tokens_per_s=args.tokens_per_s,
                       answer=long_answer(3000)) as server:
        client = runtime_client(server.url)
        boto3_figures = [stop_through_boto3(client, server.url, delay) for delay in delays]
        relay_figures = asyncio.run(stops_through_relay(server.url, delays))
    rows = [_rows("boto3 + show_stream (notebook)", boto3_figures),
            _rows("relay: aiohttp SSE + aiobotocore", relay_figures)]
    gap_ms = 1000 / args.tokens_per_s
    publish("cancel_latency", rows, [
        f"Command: `{command_line()}`",
        f"Stand-in in its own process, replay at {args.tokens_per_s:g} tokens/s "
        f"(one token every {gap_ms:.1f} ms), region {REGION}; Stop 0.2-0.6 s after the first "
        "token. 'Stop to last token': the stand-in's last frame written after the Stop "
        "(0 when none followed). The stand-in checks for a closed connection before each "
        "token, as TGI and DJL Serving do, so about one token's time is the floor.",
        f"Machine: {machine()}",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
