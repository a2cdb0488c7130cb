"""`python -m common.local`: run the local SageMaker stand-in from a terminal.

Subcommands:

* ``serve`` (the default): start the stand-in, print the ``export`` lines a shell or a
  Jupyter server needs, and serve until Ctrl-C (or SIGTERM), then shut down cleanly.
* ``env FILE``: print the ``export`` lines again from the JSON that ``serve --env-json FILE``
  wrote (for a second terminal: ``eval "$(python -m common.local env FILE)"``).
* ``demo``: run one recipe's deploy and inference notebooks against a fresh stand-in
  (:mod:`common.local.demo`).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
A local stand-in for Amazon SageMaker: real clients (boto3, the SageMaker SDK,
huggingface_hub) and real wire protocols, no AWS account. It runs

  * moto in proxy mode for STS, IAM, S3 and SageMaker (HTTPS_PROXY + AWS_CA_BUNDLE), with
    endpoints that go Creating -> InService (or Failed) after --endpoint-delay seconds;
  * a sagemaker-runtime server (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME) that streams real
    event-stream frames in the TGI or LMI container's format;
  * a Hugging Face cache with tiny snapshots of the known Llama variants, served by a
    small local Hub API (HF_ENDPOINT: auth-check, file listing and downloads; the rest from
    the cache) -- with your own Hugging Face cache too (--hub-cache DIR), so any model whose
    config and tokenizer files you downloaded runs under the stand-in;
  * Service Quotas for SageMaker endpoints (--quota TYPE=N), enforced by CreateEndpoint
    and by managed instance scaling;
  * a fresh IPYTHONDIR, so %store data stays out of your profile.

Everything listens on 127.0.0.1 only and uses dummy credentials.
"""

SERVE_EPILOG = """\
Use it from a shell (the output is valid shell: the banner lines are comments):

  python -m common.local --env-json /tmp/stand-in.json    # terminal 1, keeps running
  eval "$(python -m common.local env /tmp/stand-in.json)" # terminal 2
  jupyter lab                                             # notebooks now reach the stand-in
"""


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _quota(text: str) -> tuple[str, float | None]:
    from common.local.quotas import parse_quota

    try:
        return parse_quota(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _add_stack_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--backend", choices=("replay", "model"), default=default("replay"),
        help="what answers the endpoints: 'replay' streams a canned, realistic chat answer "
             "(not a real model; the default), 'model' generates with a small real model on "
             "the CPU (install it with: python -m common.local.model_backend --install)")
    parser.add_argument(
        "--endpoint-delay", dest="endpoint_delay_s", type=_non_negative, default=default(3.0),
        metavar="SECONDS",
        help="how long a new endpoint stays Creating before InService (default: 3)")
    parser.add_argument(
        "--ttft", dest="ttft_s", type=_non_negative, default=default(None), metavar="SECONDS",
        help="replay backend: time to the first token (default: the backend's, about a 7B "
             "model on a g5)")
    parser.add_argument(
        "--tokens-per-second", dest="tokens_per_s", type=_non_negative, default=default(None),
        metavar="N", help="replay backend: tokens per second after the first (default: the "
                          "backend's)")
    parser.add_argument(
        "--time-scale", dest="time_scale", type=_positive, default=default(None), metavar="N",
        help="simulated seconds per real second for every simulated delay: endpoint "
             "creation (--endpoint-delay is simulated), instance provisioning, copy start-up, "
             "metric periods, alarms, cooldowns, idle release (default: 1, real time; e.g. "
             "120 runs an hour of autoscaling in 30 s)")
    parser.add_argument(
        "--copy-concurrency", dest="copy_concurrency", type=_positive_int,
        default=default(None), metavar="N",
        help="streams one inference-component copy serves at once; more wait in its queue "
             "(default: from the container's settings -- LMI max rolling batch size, TGI "
             "MAX_BATCH_TOTAL_TOKENS / MAX_TOTAL_TOKENS -- else 8)")
    parser.add_argument(
        "--copy-ttft", dest="copy_ttft_s", type=_non_negative, default=default(None),
        metavar="SECONDS",
        help="inference components: each stream's first token no sooner than this after it "
             "gets a place on a copy (real seconds; default: the backend's own pace)")
    parser.add_argument(
        "--copy-tokens-per-second", dest="copy_tokens_per_s", type=_positive,
        default=default(None), metavar="N",
        help="inference components: each stream's tokens no faster than this (default: the "
             "backend's own pace)")


def _add_output_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--log-file", type=Path, default=default(None), metavar="FILE",
        help="where the kernels' own output and the control plane proxy's access log go "
             "(default: a new file in the temporary folder, named in the banner)")
    parser.add_argument(
        "--verbose", action="store_true", default=default(False),
        help="show the kernels' own output and the proxy's access log in the terminal "
             "instead of the log file")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m common.local``."""
    parser = argparse.ArgumentParser(
        prog="python -m common.local", description=DESCRIPTION, epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="{serve,env,demo}")

    serve = commands.add_parser(
        "serve", help="start the stand-in and serve until Ctrl-C (the default)",
        description=DESCRIPTION, epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # The top-level parser carries the same options with their defaults (so that a bare
    # `python -m common.local --port 8080` works); after `serve`, only what is given counts.
    _add_serve_options(serve, suppress=True)

    env = commands.add_parser(
        "env", help="print the export lines of a running stand-in from its --env-json file",
        description="Print the unset/export lines saved by `serve --env-json FILE`.")
    env.add_argument("env_json", type=Path, metavar="FILE",
                     help="the file a running `python -m common.local --env-json FILE` wrote")
    env.add_argument("--format", choices=("shell", "json"), default="shell",
                     help="shell: unset/export lines (default); json: the variables as JSON")

    demo = commands.add_parser(
        "demo", help="run one recipe's deploy and inference notebooks against the stand-in",
        description="Start the stand-in, then execute one recipe's deploy and inference "
                    "notebooks headless, echoing what the cells print as it arrives.")
    demo.add_argument("--container", choices=("tgi", "lmi"), default="tgi",
                      help="which serving container's recipe (default: tgi)")
    demo.add_argument("--size", choices=("7b", "13b", "70b"), default="7b",
                      help="which model size's recipe (default: 7b)")
    demo.add_argument("--recipe", choices=("stream", "scale"), default="stream",
                      help="stream: the deploy and inference notebooks (default); scale: the "
                           "scale notebook (inference components, autoscaling to zero) on a "
                           "compressed clock, with the scaling timeline at the end")
    _add_stack_options(demo)
    _add_output_options(demo)
    demo.set_defaults(endpoint_delay_s=None)

    _add_serve_options(parser)  # `python -m common.local [options]` means `serve [options]`
    return parser


def _add_serve_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    _add_stack_options(parser, suppress=suppress)
    _add_output_options(parser, suppress=suppress)
    parser.add_argument(
        "--fail-endpoint", dest="fail_endpoints", action="append", default=default([]),
        metavar="NAME", help="make endpoints with this name (or shell pattern, e.g. 'bad-*') "
                             "go Failed with a FailureReason instead of InService; repeatable")
    parser.add_argument(
        "--quota", dest="quotas", action="append", type=_quota, default=default([]),
        metavar="TYPE=N",
        help="the account's endpoint quota for an instance type, e.g. ml.g5.12xlarge=0: "
             "Service Quotas reports it, and CreateEndpoint and managed instance scaling stop "
             "at it (ResourceLimitExceeded); TYPE=default leaves the type without an applied "
             "value (AWS's default, 0 for GPU types, applies and ListServiceQuotas omits it) "
             "(default: 100 of every GPU type); repeatable")
    parser.add_argument(
        "--gated-denied", dest="gated_denied", action="append", default=default([]),
        metavar="MODEL_ID",
        help="the hub refuses every token for this gated model, as the Hugging Face Hub "
             "refuses a token whose account has not accepted the licence; repeatable")
    parser.add_argument(
        "--hub-cache", dest="hub_caches", action="append", type=Path, default=default([]),
        metavar="DIR",
        help="also serve the models of this Hugging Face cache (e.g. ~/.cache/huggingface/hub, "
             "or an HF_HOME holding hub/) through the stand-in's hub, read-only: config and "
             "tokenizer files are enough, weights may be absent; the replay backend answers in "
             "each model's chat template and end token; repeatable")
    parser.add_argument(
        "--port", type=int, default=default(0),
        help="the control plane proxy's port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--runtime-port", type=int, default=default(0),
        help="the sagemaker-runtime server's port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--workdir", type=Path, default=default(None),
        help="keep the HF cache, IPYTHONDIR and certificates here (default: a temporary "
             "folder, removed on exit)")
    parser.add_argument(
        "--env-json", type=Path, default=default(None), metavar="FILE",
        help="also write the variables as JSON to FILE (for tools, and for `env FILE`)")


# --------------------------------------------------------------------------- commands


def serve(args: argparse.Namespace, *, out: TextIO = sys.stdout,
          stop: threading.Event | None = None) -> int:
    """Start the stand-in, print its environment, serve until interrupted; returns 0.

    ``stop`` ends serving when set (SIGINT and SIGTERM set it too).
    """
    from common.local.logfile import BackgroundLog
    from common.local.stack import UNSET_VARIABLES, LocalStack

    stop = stop or threading.Event()
    stack = LocalStack(
        backend=args.backend, endpoint_delay_s=args.endpoint_delay_s, ttft_s=args.ttft_s,
        tokens_per_s=args.tokens_per_s, workdir=args.workdir,
        fail_endpoints=args.fail_endpoints, port=args.port, runtime_port=args.runtime_port,
        quotas=dict(args.quotas), gated_denied=args.gated_denied,
        time_scale=args.time_scale if args.time_scale is not None else 1.0,
        copy_concurrency=args.copy_concurrency, copy_ttft_s=args.copy_ttft_s,
        copy_tokens_per_s=args.copy_tokens_per_s, hub_caches=args.hub_caches)
    background = BackgroundLog(args.log_file, verbose=args.verbose, command="serve",
                               label="Proxy access log")
    previous = _install_signal_handlers(stop)
    try:
        with background, stack:
            env = stack.env
            if args.env_json is not None:
                args.env_json.write_text(json.dumps(
                    {"env": env, "unset": list(UNSET_VARIABLES)}, indent=2) + "\n")
            out.write(f"# Local SageMaker stand-in -- {stack.backend_label}\n")
            out.write(f"# control plane (moto proxy) {stack.proxy_url}, "
                      f"sagemaker-runtime {stack.runtime_url}; endpoints take "
                      f"{args.endpoint_delay_s:g} s to come up"
                      f"{'' if stack.time_scale == 1 else ' (simulated)'}; time scale "
                      f"{stack.time_scale:g}x\n")
            out.write(f"# {background.describe()}\n")
            if args.hub_caches:
                out.write("# hub: also serving " + ", ".join(
                    str(c) for c in stack.hub_caches) + " (read-only): " + ", ".join(
                    r for r in stack.served_repositories() if not _is_catalogue(r)) + "\n")
            out.write("\n".join(stack.shell_lines()) + "\n")
            out.write("# Serving until Ctrl-C.\n")
            out.flush()
            while not stop.wait(0.5):
                pass
    finally:
        _restore_signal_handlers(previous)
    out.write("# Stopped.\n")
    out.flush()
    return 0


def _is_catalogue(repo_id: str) -> bool:
    from common.variants import VARIANTS

    return repo_id in VARIANTS


def print_env(args: argparse.Namespace, *, out: TextIO = sys.stdout) -> int:
    """Print the variables saved by ``serve --env-json``; returns 0, or 2 for a bad file."""
    try:
        saved = json.loads(args.env_json.read_text())
        env, unset = saved["env"], saved["unset"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(
            f"cannot read {args.env_json}: {exc}. Start the stand-in with "
            f"`python -m common.local --env-json {args.env_json}` first.\n")
        return 2
    if args.format == "json":
        out.write(json.dumps(env, indent=2) + "\n")
    else:
        out.write(f"unset {' '.join(unset)}\n")
        out.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return 0


def demo(args: argparse.Namespace) -> int:
    """Hand over to :func:`common.local.demo.main` (imported only when asked for)."""
    from common.local import demo as demo_module

    return int(demo_module.main(args) or 0)


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m common.local`` with ``argv``; returns the exit status."""
    # Our own logging set-up first: moto's proxy module would otherwise point the root
    # logger at stdout, mixing log lines into the export lines.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # Scaling events (copies, instances, alarms, scaling activities) are worth watching.
    logging.getLogger("common.local.scaling").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    try:
        if command == "env":
            return print_env(args)
        if command == "demo":
            return demo(args)
        return serve(args)
    except Exception as exc:
        from common.errors import RecipeError

        if not isinstance(exc, RecipeError):
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
