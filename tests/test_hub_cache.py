"""`python -m common.local --hub-cache DIR`: a user's own Hugging Face cache served through the
stand-in's hub (read-only), and the served model's own template and end token in the replay."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from model_fixtures import (
    FINE_TUNE_ID,
    VISION_ID,
    fine_tune_documents,
    repository_files,
    serving_properties_tarball,
    write_user_cache,
)

from common.local import served_model
from common.local.backends import GenerationRequest, ReplayBackend, end_token_for
from common.local.controlplane import LocalStackError
from common.local.hubapi import HubApiServer
from common.local.stack import hub_cache_folder

ROOT = Path(__file__).resolve().parents[1]
SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def user_cache(tmp_path) -> Path:
    return write_user_cache(tmp_path / "home" / "hub")


@pytest.fixture
def hub(tmp_path, user_cache):
    own = tmp_path / "stand-in"
    own.mkdir()
    server = HubApiServer(own, extra_caches=[user_cache]).start()
    previous = served_model.use_hub(server.snapshot)
    yield server
    served_model.use_hub(previous)  # a session's stand-in keeps its own hub
    server.stop()


@pytest.fixture
def no_hub():
    """No hub snapshot behind ``served_model`` for the test; the previous one put back after,
    whatever the test's outcome."""
    previous = served_model.use_hub(None)
    yield
    served_model.use_hub(previous)


def test_a_hub_cache_is_found_from_hf_home_or_the_hub_folder(user_cache, tmp_path):
    assert hub_cache_folder(user_cache) == user_cache.resolve()
    assert hub_cache_folder(user_cache.parent) == user_cache.resolve()  # an HF_HOME
    with pytest.raises(LocalStackError, match=r"not a Hugging Face hub cache.*hf download"):
        hub_cache_folder(tmp_path / "nothing-here")


def test_the_users_models_are_served_and_the_cache_is_never_written(hub, user_cache,
                                                                    tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    before = _digest(user_cache)
    assert set(hub.repositories()) == {FINE_TUNE_ID, VISION_ID}
    client_cache = tmp_path / "client"
    path = hf_hub_download(FINE_TUNE_ID, "chat_template.jinja", cache_dir=client_cache,
                           endpoint=hub.url)
    assert Path(path).read_text() == fine_tune_documents()["chat_template.jinja"]
    files = {f.path for f in HfApi(endpoint=hub.url).list_repo_tree(FINE_TUNE_ID,
                                                                    recursive=True)}
    assert {"config.json", "tokenizer.json", "chat_template.jinja"} <= files
    assert "model.safetensors" not in files  # config and tokenizer files are enough
    assert _digest(user_cache) == before


def test_the_served_model_s_template_and_end_token_come_from_its_files(hub):
    from common.local.containers import _render_chat

    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Which AnyCloud Internet Service plan is best?"}]
    # vLLM (LMI) reads chat_template.jinja; TGI 3.3.6 does not, and says so as TGI does.
    assert _render_chat(messages, FINE_TUNE_ID, "lmi").startswith(
        "<|begin_of_text|><|im_start|>system\nBe brief.<|im_end|>\n")
    with pytest.raises(ValueError, match="template not found"):
        _render_chat(messages, FINE_TUNE_ID, "tgi")
    end = end_token_for(FINE_TUNE_ID)
    assert (end.text, end.id, end.special) == ("<|im_end|>", 128011, True)
    # The replay reads the last user message out of a prompt in the model's layout.
    prompt = served_model.render_chat(
        [*messages, {"role": "assistant", "content": "The fast one."},
         {"role": "user", "content": "Write to Alice about AnyCloud Streaming Service."}],
        FINE_TUNE_ID, "lmi").removeprefix("<|begin_of_text|>")
    assert served_model.last_user_text(prompt, FINE_TUNE_ID) == (
        "Write to Alice about AnyCloud Streaming Service.")
    tokens = ReplayBackend(0, 0).tokens_for(GenerationRequest(prompt=prompt,
                                                              model_id=FINE_TUNE_ID))
    text = "".join(t.text for t in tokens[:-1])
    assert "AnyCloud Streaming Service" in text and tokens[-1].text == "<|im_end|>"


@pytest.mark.parametrize("repo", ["meta-llama/Llama-3.1-8B-Instruct", SCOUT,
                                  "meta-llama/Llama-2-7b-chat-hf"])
def test_the_last_user_message_is_read_in_the_catalogue_layouts(repo):
    from common.prompts import build_prompt
    from common.variants import VARIANTS

    variant = VARIANTS[repo]
    bos, eos = variant.special_tokens
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "first ask"},
                {"role": "assistant", "content": "answer"},
                {"role": "user", "content": "the last ask"}]
    prompt = build_prompt(messages, variant.template, bos_token=bos, eos_token=eos)
    if repo.startswith("meta-llama/Llama-2"):
        assert served_model.last_user_text(prompt, repo) is not None
    else:
        assert served_model.last_user_text(prompt, repo) == "the last ask"
    assert served_model.last_user_text(prompt[:-3], repo) is None  # not that layout


def test_an_lmi_endpoint_reads_the_template_from_the_files_copied_to_s3(no_hub):
    objects = {("b", "ft/code/model.tar.gz"): serving_properties_tarball("option.model_id=s3://b/ft/model/\n")}
    for name, data in repository_files(fine_tune_documents(), weights=False).items():
        objects[("b", f"ft/model/{name}")] = data
    assert served_model.served_model_id("s3://b/ft/code/model.tar.gz",
                                        lambda b, k: objects.get((b, k))) == FINE_TUNE_ID
    served = served_model.lookup(FINE_TUNE_ID)
    assert served is not None and served.chat_template == fine_tune_documents()[
        "chat_template.jinja"]
    assert served.tgi_chat_template is None and served.end_token == "<|im_end|>"
    # A fine-tune whose config names no hub id is known by its S3 prefix.
    config = json.loads(objects[("b", "ft/model/config.json")])
    del config["_name_or_path"]
    objects[("b", "ft2/code/model.tar.gz")] = serving_properties_tarball("option.model_id=s3://b/ft2/model/\n")
    for (bucket, key), data in list(objects.items()):
        if key.startswith("ft/model/"):
            objects[(bucket, key.replace("ft/", "ft2/", 1))] = (
                json.dumps(config).encode() if key.endswith("config.json") else data)
    assert served_model.served_model_id("s3://b/ft2/code/model.tar.gz",
                                        lambda b, k: objects.get((b, k))) == "s3://b/ft2/model/"
    assert served_model.lookup("s3://b/ft2/model/").end_token == "<|im_end|>"


def test_the_flag_is_in_the_help():
    done = subprocess.run([sys.executable, "-m", "common.local", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert "--hub-cache DIR" in done.stdout
    assert "--quota TYPE=N" in done.stdout and "--gated-denied" in done.stdout


def test_python_m_common_local_serves_a_users_cache(user_cache, tmp_path):
    from huggingface_hub import hf_hub_download

    before = _digest(user_cache)
    env_json = tmp_path / "env.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AWS_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "common.local", "--hub-cache", str(user_cache.parent),
         "--env-json", str(env_json), "--workdir", str(tmp_path / "work"),
         "--log-file", str(tmp_path / "log.txt")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not env_json.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert env_json.exists(), process.stderr.read() if process.poll() is not None else ""
        saved = json.loads(env_json.read_text())["env"]
        path = hf_hub_download(FINE_TUNE_ID, "config.json", cache_dir=tmp_path / "client",
                               endpoint=saved["HF_ENDPOINT"])
        assert json.loads(Path(path).read_text())["_name_or_path"] == FINE_TUNE_ID
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    banner = next(line for line in out.splitlines() if line.startswith("# hub: also serving"))
    assert FINE_TUNE_ID in banner and VISION_ID in banner
    assert _digest(user_cache) == before
