"""`LocalStack` and `python -m common.local`: start, environment, loopback only, clean stop."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from common.gpu_drivers import inference_ami_version
from common.local.stack import (
    BACKENDS,
    DUMMY_HF_TOKEN,
    UNSET_VARIABLES,
    LocalStackError,
    make_backend,
)

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_VARIABLES = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
    "AWS_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "no_proxy",
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE",
    "HF_TOKEN", "IPYTHONDIR", "SAGEMAKER_EXECUTION_ROLE_ARN",
}


def _python_env() -> dict[str, str]:
    """The test process's environment minus the stand-in's (a child starts its own)."""
    env = {k: v for k, v in os.environ.items()
           if k not in EXPECTED_VARIABLES and k not in {"https_proxy", "http_proxy"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# --------------------------------------------------------------------------- backends


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(LocalStackError, match="model, replay"):
        make_backend("gpt")


def test_a_backend_whose_module_is_missing_says_so(monkeypatch):
    monkeypatch.setitem(BACKENDS, "ghost", ("common.local.no_such_backend", "Ghost"))
    with pytest.raises(LocalStackError, match=r"common\.local\.no_such_backend"):
        make_backend("ghost")


def test_pacing_options_are_for_the_replay_backend_only():
    with pytest.raises(ValueError, match="replay backend only"):
        make_backend("model", ttft_s=0.1)


# --------------------------------------------------------------------------- the session stack


def test_the_environment_points_every_client_at_loopback(local_stack):
    env = local_stack.env
    assert set(env) >= EXPECTED_VARIABLES
    assert "COMMON_DISPLAY" not in env
    assert not set(env) & set(UNSET_VARIABLES)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
                 "HF_ENDPOINT"):
        assert urlsplit(env[name]).hostname == "127.0.0.1", name
    assert {"127.0.0.1", "localhost"} <= set(env["NO_PROXY"].split(","))
    assert Path(env["AWS_CA_BUNDLE"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    # Not offline: huggingface_hub would refuse auth_check; the local Hub API answers it.
    assert "HF_HUB_OFFLINE" in UNSET_VARIABLES and env["HF_TOKEN"] == DUMMY_HF_TOKEN
    assert Path(env["IPYTHONDIR"]).is_dir()
    assert (Path(env["HF_HUB_CACHE"]) / "models--meta-llama--Llama-2-7b-chat-hf").is_dir()
    for name, value in env.items():
        assert os.environ[name] == value, f"{name} was not applied"
    for name in UNSET_VARIABLES:
        assert name not in os.environ


def test_the_runtime_is_reached_directly_and_sees_the_control_plane(local_stack):
    runtime = local_stack.client("sagemaker-runtime")
    assert runtime.meta.endpoint_url == local_stack.runtime_url
    assert local_stack.lookup("st-no-such-endpoint") is None
    assert local_stack.backend_label.startswith(f"{local_stack.backend.name} backend: ")


def test_the_runtime_answers_what_the_control_plane_deployed(local_stack, request_log):
    import boto3

    name = f"st-e2e-{uuid.uuid4().hex[:8]}"
    image = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=local_stack.role_arn,
                           PrimaryContainer={"Image": image})
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "Blue", "ModelName": name,
                             "InstanceType": "ml.g5.2xlarge", "InitialInstanceCount": 1,
                             "InferenceAmiVersion": inference_ami_version(image,
                                                                          "ml.g5.2xlarge")}])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    answer = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, ContentType="application/json",
        Body=json.dumps({"inputs": "[INST] Hi [/INST]", "parameters": {"max_new_tokens": 4}}))

    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-invoked-production-variant"] == "Blue"
    (generated,) = json.loads(answer["Body"].read())  # TGI's shape: [{"generated_text": ...}]
    assert isinstance(generated["generated_text"], str)
    assert [r["endpoint"] for r in request_log()] == [name]


def test_shell_lines_export_exactly_the_environment(local_stack):
    lines = local_stack.shell_lines()
    assert lines[0] == "unset " + " ".join(UNSET_VARIABLES)
    exported = dict(shlex.split(line)[1].split("=", 1) for line in lines[1:])
    assert exported == local_stack.env


# --------------------------------------------------------------------------- a stack of its own

# Runs in a child process: moto's backends are global, so only one stand-in runs per process
# and the session's is already up here.
ISOLATED = textwrap.dedent("""
    import json, os, socket, threading
    from pathlib import Path
    from common.local.stack import LocalStack, LocalStackError

    def listening():
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    address, port = fields[1].split(":")
                    found.append([address, int(port, 16)])
        return found

    threads_before = sorted(t.name for t in threading.enumerate())
    sockets_before = listening()
    environ_before = dict(os.environ)
    stack = LocalStack(endpoint_delay_s=0.2, ttft_s=0, tokens_per_s=0)
    stack.start()
    stack.apply_env()
    try:
        LocalStack().start()
        second = "started"
    except LocalStackError as exc:
        second = str(exc)
    sockets_running = [s for s in listening() if s not in sockets_before]
    threads_running = len(threading.enumerate())
    ports = [int(u.rsplit(":", 1)[1].split("/")[0]) for u in stack.urls.values()]
    workdir = stack.workdir
    stack.stop()
    refused = []
    for port in ports:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            refused.append(False)
        except OSError:
            refused.append(True)
    print(json.dumps({
        "second": second,
        "sockets_running": sockets_running,
        "ports": ports,
        "threads_running": threads_running,
        "threads_after": sorted(t.name for t in threading.enumerate()),
        "threads_before": threads_before,
        "sockets_after": [s for s in listening() if s not in sockets_before],
        "refused": refused,
        "environ_restored": dict(os.environ) == environ_before,
        "workdir_removed": not workdir.exists(),
    }))
""")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_a_stack_binds_loopback_only_and_stops_without_leftovers():
    done = subprocess.run([sys.executable, "-c", ISOLATED], env=_python_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert "already running" in report["second"]
    assert sorted(port for _, port in report["sockets_running"]) == sorted(report["ports"])
    assert {address for address, _ in report["sockets_running"]} == {"0100007F"}  # 127.0.0.1
    assert report["threads_running"] > len(report["threads_before"])
    assert report["threads_after"] == report["threads_before"]
    assert report["sockets_after"] == []
    assert report["refused"] == [True, True, True]  # proxy, runtime, hub
    assert report["environ_restored"] and report["workdir_removed"]


# --------------------------------------------------------------------------- the command


def test_help_describes_every_option():
    done = subprocess.run([sys.executable, "-m", "common.local", "--help"], env=_python_env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    for option in ("--backend", "--endpoint-delay", "--ttft", "--tokens-per-second",
                   "--fail-endpoint", "--port", "--env-json", "serve", "env", "demo",
                   "--quota", "--gated-denied"):
        assert option in done.stdout, option


def test_the_command_prints_exports_serves_and_stops_on_ctrl_c(tmp_path):
    env_json = tmp_path / "stand-in.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "common.local", "--endpoint-delay", "0.1",
         "--ttft", "0", "--env-json", str(env_json)],
        env=_python_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"the command ended early: {process.stderr.read()}"
            lines.append(line.rstrip("\n"))
            if line.startswith("# Serving until Ctrl-C"):
                break
        assert lines[0].startswith("# Local SageMaker stand-in -- replay backend: ")
        exports = dict(shlex.split(line)[1].split("=", 1)
                       for line in lines if line.startswith("export "))
        assert set(exports) >= EXPECTED_VARIABLES
        saved = json.loads(env_json.read_text())
        assert saved["env"] == exports

        proxy = exports["HTTPS_PROXY"]
        identity = _sts_identity(proxy, exports["AWS_CA_BUNDLE"])
        assert identity["Account"] == "123456789012"

        again = subprocess.run([sys.executable, "-m", "common.local", "env", str(env_json)],
                               env=_python_env(), cwd=ROOT, capture_output=True, text=True,
                               timeout=60, check=True)
        assert [line for line in again.stdout.splitlines() if line.startswith("export ")] == [
            line for line in lines if line.startswith("export ")]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.rstrip().endswith("# Stopped.")


def _sts_identity(proxy: str, ca_bundle: str) -> dict:
    import boto3
    from botocore.config import Config

    sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing", verify=ca_bundle,
                       config=Config(proxies={"https": proxy}))
    return sts.get_caller_identity()


def test_env_with_a_missing_file_says_how_to_start_the_stand_in(tmp_path):
    done = subprocess.run([sys.executable, "-m", "common.local", "env",
                           str(tmp_path / "none.json")], env=_python_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--env-json" in done.stderr
