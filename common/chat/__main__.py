"""``python -m common.chat serve --endpoint NAME ...``: the chat relay for a browser.

The first line printed is the URL it serves on; the log (requests, errors with their
internals) goes to standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from common.chat.server import DEFAULT_SYSTEM_PROMPT, RelaySettings, is_loopback, serve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m common.chat",
        description="Chat with a SageMaker endpoint in the browser: an async relay of the "
                    "response stream as server-sent events, with one static page.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the chat page and relay")
    serve_cmd.add_argument("--endpoint", required=True, help="the SageMaker endpoint name")
    serve_cmd.add_argument("--inference-component", default=None,
                           help="the inference component to call (endpoints that host them)")
    serve_cmd.add_argument("--host", default="127.0.0.1",
                           help="address to bind (default 127.0.0.1: this machine only)")
    serve_cmd.add_argument("--port", type=int, default=8080, help="port (0: any free one)")
    serve_cmd.add_argument("--region", default=None, help="AWS region (default: environment)")
    serve_cmd.add_argument("--container", choices=("tgi", "lmi", "auto"), default="auto",
                           help="the endpoint's container (default: detect the stream format)")
    serve_cmd.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT)
    serve_cmd.add_argument("--max-new-tokens", type=int, default=512)
    serve_cmd.add_argument("--max-input-tokens", type=int, default=3072,
                           help="the endpoint's MAX_INPUT_TOKENS (0: none, as for LMI)")
    serve_cmd.add_argument("--max-total-tokens", type=int, default=4096)
    serve_cmd.add_argument("--max-message-chars", type=int, default=4000)
    serve_cmd.add_argument("--model-id", default=None,
                           help="count tokens with this model's tokenizer.json (default: a "
                                "high estimate)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    counter = None
    if args.model_id:
        from common.conversation import token_counter

        counter = token_counter(args.model_id)
        logging.getLogger("common.chat").info("counting tokens with %s", counter.source)
    settings = RelaySettings(
        endpoint=args.endpoint, inference_component=args.inference_component,
        region=args.region, container=args.container, system_prompt=args.system_prompt,
        max_input_tokens=args.max_input_tokens or None,
        max_total_tokens=args.max_total_tokens, max_new_tokens=args.max_new_tokens,
        max_message_chars=args.max_message_chars,
        allowed_hosts=RelaySettings.allowed_hosts if is_loopback(args.host) else None)
    if not is_loopback(args.host):
        logging.getLogger("common.chat").warning(
            "serving on %s: anyone who can reach it can use the endpoint (and its bill); "
            "put authentication in front of it", args.host)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, host=args.host, port=args.port, count_tokens=counter,
                          ready=lambda url: print(url, flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
