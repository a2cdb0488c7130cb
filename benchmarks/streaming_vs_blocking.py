"""Time to first token with streaming against the whole wait without it, at a 7B-like pace.

Run from the repository root::

    python benchmarks/streaming_vs_blocking.py                       # 64, 256, 512 tokens
    python benchmarks/streaming_vs_blocking.py --tokens-per-s 30 --ttft 0.2 --repeats 1

The stand-in's ``sagemaker-runtime`` server runs in its own process with a replay backend
paced like Llama 2 7B on a g5 (first token after 0.06 s, then 60 tokens/s; flags change
both) behind a TGI-image endpoint. For each answer length, real boto3 sends the same request
two ways, as the inference notebooks do:

* streaming -- ``invoke_endpoint_with_response_stream`` with ``"stream": true``, read with
  ``common.iter_text`` + ``common.measure``: the time to the first token (TTFT) is when the
  reader first sees text; the stream is read to its end (its total is shown too);
* blocking -- ``invoke_endpoint`` with ``"stream": false``: nothing is seen until the whole
  answer has arrived.

Each way runs ``--repeats`` times (median kept). The table (with the ratio blocking total /
streaming TTFT) is printed and written to ``benchmarks/results/streaming_vs_blocking.csv``
and ``.md`` with the command; the chart the inference notebooks draw
(``common.display.plot_latency_comparison``) goes to ``streaming_vs_blocking.png``.
This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_overhead import (
    ENDPOINT,
    RESULTS,
    command_line,
    long_answer,
    machine,
    payload,
    publish,
    replay_server,
    runtime_client,
)

from common.metrics import measure
from common.streaming import iter_text

LENGTHS = (64, 256, 512)
SEVEN_B = " (about Llama 2 7B on one ml.g5.2xlarge GPU)"


def streaming(client: Any, tokens: int) -> tuple[float, float, int]:
    """One streaming request: (TTFT s, total s, tokens received)."""
    started = time.perf_counter()
    response = client.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT, Body=payload(tokens, stream=True),
        ContentType="application/json")
    stream = measure(iter_text(response["Body"], container="tgi"), start=started)
    for _piece in stream:
        pass
    metrics = stream.metrics
    if metrics.ttft_s is None:
        raise RuntimeError("the streamed answer was empty")
    return metrics.ttft_s, metrics.total_s, metrics.token_count


def blocking(client: Any, tokens: int) -> tuple[float, str]:
    """One ``invoke_endpoint`` request with ``"stream": false``: (total s, generated text)."""
    started = time.perf_counter()
    response = client.invoke_endpoint(
        EndpointName=ENDPOINT, Body=payload(tokens, stream=False),
        ContentType="application/json")
    answer = json.loads(response["Body"].read())
    elapsed = time.perf_counter() - started
    document = answer[0] if isinstance(answer, list) else answer
    return elapsed, document["generated_text"]


def draw(rows: list[tuple[str, float, float]], path: Path, subtitle: str) -> None:
    """Draw the notebooks' comparison chart for ``rows`` into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.display import plot_latency_comparison

    figure = plot_latency_comparison(rows)
    axes = figure.axes[0]
    axes.set_title(f"Streaming vs. blocking: time to first visible text\n{subtitle}",
                   fontsize="medium")
    figure.set_figheight(figure.get_figheight() + 0.6)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Measure every length both ways, print the table, write CSV/MD/PNG; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)),
                        help="new tokens per answer, comma-separated (64,256,512)")
    parser.add_argument("--ttft", type=float, default=0.06,
                        help="replay time to first token in s (0.06)")
    parser.add_argument("--tokens-per-s", type=float, default=60.0,
                        help="replay token rate (60)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way (3)")
    args = parser.parse_args(argv)
    lengths = [int(part) for part in args.lengths.split(",") if part.strip()]

    answer = long_answer(max(lengths) + 16)
    rows: list[dict[str, str]] = []
    chart: list[tuple[str, float, float]] = []
    with replay_server(ttft_s=args.ttft, tokens_per_s=args.tokens_per_s, answer=answer) as server:
        client = runtime_client(server.url)
        streaming(client, 8)  # warm-up: connection, credentials, botocore's models
        for tokens in lengths:
            print(f"{tokens} new tokens: {args.repeats} x streaming, {args.repeats} x "
                  f"blocking ...", flush=True)
            streamed = [streaming(client, tokens) for _ in range(args.repeats)]
            blocked = [blocking(client, tokens) for _ in range(args.repeats)]
            received = {count for _, _, count in streamed}
            if received != {tokens}:
                raise RuntimeError(f"asked for {tokens} tokens, the streams brought {received}")
            ttft = statistics.median(t for t, _, _ in streamed)
            stream_total = statistics.median(total for _, total, _ in streamed)
            block_total = statistics.median(total for total, _ in blocked)
            rows.append({
                "new_tokens": str(tokens),
                "streaming_ttft_s": f"{ttft:.3f}",
                "streaming_total_s": f"{stream_total:.3f}",
                "blocking_total_s": f"{block_total:.3f}",
                "blocking_over_ttft": f"{block_total / ttft:.0f}x",
            })
            chart.append((f"{tokens} new tokens", ttft, block_total))
    pace = f"replay {args.ttft * 1000:.0f} ms to first token, {args.tokens_per_s:g} tokens/s"
    png = RESULTS / "streaming_vs_blocking.png"
    draw(chart, png, f"local stand-in, {pace}")
    lines = [
        "The reader of a streamed answer sees text after the TTFT; without streaming, after "
        "the blocking total. Ratio = blocking total / streaming TTFT.",
        f"Pace: {pace}{SEVEN_B if (args.ttft, args.tokens_per_s) == (0.06, 60.0) else ''}; "
        f"median of {args.repeats} runs "
        "each way; TGI format; the stand-in's runtime server in its own process on 127.0.0.1; "
        "real boto3.",
        f"Chart: `{png.relative_to(RESULTS.parent.parent)}`.",
        f"Machine: {machine()}.",
        f"Command: `{command_line()}`",
    ]
    publish("streaming_vs_blocking", rows, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
