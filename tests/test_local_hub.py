"""The offline Hugging Face hub: tiny snapshots in a real cache, read by the real library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.local.hub import (
    LLAMA2_CHAT_REPOS,
    commit_for,
    repo_files,
    safetensors_bytes,
    write_tiny_snapshot,
)

# The patterns the LMI deploy notebooks pass to snapshot_download.
RECIPE_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.bin", "*.chk", "*.pth"]

SNAPSHOT_SCRIPT = textwrap.dedent("""
    import json, sys
    from huggingface_hub import snapshot_download
    results = []
    for repo_id, patterns in json.loads(sys.argv[1]):
        try:
            path = snapshot_download(repo_id, allow_patterns=patterns, token="hf_dummy")
            results.append({"path": path})
        except Exception as exc:
            results.append({"error": type(exc).__name__, "message": str(exc)})
    print(json.dumps(results))
""")


def _snapshot_download(cache: Path, calls: list[tuple[str, list[str] | None]]) -> list[dict]:
    """Run huggingface_hub.snapshot_download in a fresh interpreter, offline, as a kernel
    would (the library reads HF_HUB_OFFLINE and HF_HUB_CACHE when it is imported)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(cache.parent),
           "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([sys.executable, "-c", SNAPSHOT_SCRIPT, json.dumps(calls)],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_snapshot_download_finds_every_recipe_model_offline(tmp_path):
    cache = tmp_path / "hf" / "hub"
    written = {repo: write_tiny_snapshot(cache, repo) for repo in LLAMA2_CHAT_REPOS}

    results = _snapshot_download(cache, [(repo, RECIPE_PATTERNS) for repo in LLAMA2_CHAT_REPOS])

    for repo, result in zip(LLAMA2_CHAT_REPOS, results, strict=True):
        assert Path(result["path"]) == written[repo]
        assert Path(result["path"]).name == commit_for(repo)
        files = {p.name for p in Path(result["path"]).iterdir()}
        assert {"config.json", "tokenizer.json", "tokenizer.model", "model.safetensors",
                "generation_config.json", "special_tokens_map.json",
                "tokenizer_config.json"} <= files


def test_the_cache_has_the_real_layout(tmp_path):
    repo = "meta-llama/Llama-2-13b-chat-hf"
    snapshot = write_tiny_snapshot(tmp_path, repo)
    storage = tmp_path / "models--meta-llama--Llama-2-13b-chat-hf"
    assert snapshot == storage / "snapshots" / commit_for(repo)
    assert (storage / "refs" / "main").read_text() == commit_for(repo)
    for path in snapshot.iterdir():
        if path.is_symlink():
            assert path.resolve().parent == (storage / "blobs").resolve()
        assert path.read_bytes() == repo_files(repo)[path.name]


def test_allow_patterns_are_checked_against_what_the_cache_holds(tmp_path):
    cache = tmp_path / "hub"
    repo = "meta-llama/Llama-2-70b-chat-hf"
    snapshot = write_tiny_snapshot(cache, repo, allow_patterns=["*.json"])
    assert {p.suffix for p in snapshot.iterdir()} == {".json"}

    only_json, more, unknown, everything = _snapshot_download(cache, [
        (repo, ["*.json"]),
        (repo, ["*.json", "*.safetensors"]),
        ("meta-llama/Llama-2-7b-chat-hf", ["*.json"]),
        (repo, None),
    ])
    assert Path(only_json["path"]) == snapshot
    assert more["error"] == "IncompleteSnapshotError"
    assert "model.safetensors" in more["message"]
    assert unknown["error"] == "LocalEntryNotFoundError"
    assert everything["error"] == "IncompleteSnapshotError"
    assert "README.md" in everything["message"]


def test_the_recipe_patterns_leave_out_the_documents(tmp_path):
    kept = write_tiny_snapshot(tmp_path, allow_patterns=RECIPE_PATTERNS)
    names = {p.name for p in kept.iterdir()}
    assert names.isdisjoint({"README.md", "USE_POLICY.md", "Responsible-Use-Guide.pdf",
                             ".gitattributes"})
    assert "model.safetensors" in names


def test_a_repo_id_without_an_org_is_refused(tmp_path):
    with pytest.raises(ValueError, match="org/name"):
        write_tiny_snapshot(tmp_path, "Llama-2-7b-chat-hf")


def test_the_tiny_model_is_a_consistent_llama(tmp_path):
    # config.json carries the published facts of the repo; a repo the stand-in has no facts
    # for keeps the tiny model's own config, which its weights must match.
    safetensors = pytest.importorskip("safetensors")
    files = repo_files("stand-in/tiny-llama")
    config = json.loads(files["config.json"])
    tokenizer = json.loads(files["tokenizer.json"])
    assert len(tokenizer["model"]["vocab"]) == config["vocab_size"]
    path = tmp_path / "model.safetensors"
    path.write_bytes(files["model.safetensors"])
    with safetensors.safe_open(str(path), "np") as weights:
        embed = weights.get_tensor("model.embed_tokens.weight")
        assert embed.shape == (config["vocab_size"], config["hidden_size"])
        assert weights.get_tensor("lm_head.weight").shape == embed.shape
        assert weights.metadata() == {"format": "pt"}


tensor_specs = st.dictionaries(
    st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=3),
    min_size=1, max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(tensor_specs, st.randoms(use_true_random=False))
def test_for_every_set_of_tensors_the_safetensors_library_reads_back_our_bytes(specs, rnd):
    np = pytest.importorskip("numpy")
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {}
    for name, shape in specs.items():
        count = int(np.prod(shape))
        tensors[name] = (shape, [rnd.uniform(-2.0, 2.0) for _ in range(count)])

    loaded = st_numpy.load(safetensors_bytes(tensors))

    assert set(loaded) == set(tensors)
    for name, (shape, values) in tensors.items():
        assert loaded[name].dtype == np.float16
        assert list(loaded[name].shape) == shape
        expected = np.array(values, dtype=np.float16).reshape(shape)
        assert np.array_equal(loaded[name], expected)


def test_a_tensor_with_the_wrong_value_count_is_refused():
    with pytest.raises(ValueError, match="needs 6 values"):
        safetensors_bytes({"w": ([2, 3], [0.0] * 5)})
