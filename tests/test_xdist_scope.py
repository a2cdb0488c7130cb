"""The root ``conftest.py``'s units of work for pytest-xdist (``xdist_scope``), on node ids of
each kind.

The recipe notebooks' units come from the generator's paths (``tests/recipe_notebooks.py``),
no longer from patterns over folder and file names; the units expected here are the ones the
patterns gave (the two versions agreed on every node id the suite collects when one replaced
the other).
"""

from __future__ import annotations

import pytest
from recipe_notebooks import recipe_notebooks

from conftest import ROOT, SIDE_BY_SIDE_TEST, xdist_scope

_RUNS = "tests/test_notebook_runs.py::test_the_printed_answer_is_the_replayed_text_with_its_metrics"
_SCALE = "tests/test_scale_notebook_runs.py::test_every_request_named_the_component"
_FRESH = "tests/test_fresh_studio.py::test_the_hub_path_deploys_without_a_copy_and_streams"


@pytest.mark.parametrize(("nodeid", "unit"), [
    ("llama-2-hf-tgi/llama-2-7b-chat-hf/1-deploy-llama-2-7b-chat-hf-tgi.ipynb::Cell 0",
     "recipe pair 7b"),
    ("llama-2-lmi/llama-2-7b-chat/2-inference-llama-2-7b-chat-lmi-streaming.ipynb::Cell 12",
     "recipe pair 7b"),
    ("llama-2-lmi/llama-2-13b-chat/1-deploy-llama-2-13b-chat-lmi.ipynb::Cell 3",
     "recipe pair 13b-lmi"),
    ("llama-2-hf-tgi/llama-2-70b-chat-hf/2-inference-llama-2-70b-chat-hf-tgi-streaming.ipynb"
     "::Cell 5", "recipe pair 70b-tgi"),
    ("llama-2-hf-tgi/llama-2-7b-chat-hf/3-scale-llama-2-7b-chat-hf-tgi.ipynb::Cell 0",
     "recipe scale 7b-tgi"),
    ("llama-2-lmi/llama-2-70b-chat/3-scale-llama-2-70b-chat-lmi.ipynb::Cell 20",
     "recipe scale 70b-lmi"),
    (SIDE_BY_SIDE_TEST, "recipe pair 7b"),
    (f"{_RUNS}[7b-lmi]", "recipe pair 7b"),
    (f"{_RUNS}[13b-tgi]", "recipe pair 13b-tgi"),
    (f"{_SCALE}[7b-tgi]", "recipe scale 7b-tgi"),
    (f"{_SCALE}[70b-lmi]", "recipe scale 70b-lmi"),
    ("tests/test_notebook_runs.py::test_no_notebook_or_output_holds_a_token",
     "tests/test_notebook_runs.py"),
    ("tests/test_browser_chat.py::test_chat_in_jupyterlab_send_stop_and_follow_up",
     "browser tests"),
    ("tests/test_browser.py::test_live_stream_view_in_jupyterlab", "browser tests"),
    (_FRESH, _FRESH),
    ("tests/test_variant_runs.py::test_a_generated_pair_runs_against_the_stand_in"
     "[Llama-3.2-1B-Instruct-lmi]",
     "tests/test_variant_runs.py::test_a_generated_pair_runs_against_the_stand_in"
     "[Llama-3.2-1B-Instruct-lmi]"),
    ("tests/test_cleanup.py::test_ages_parse[90s-90]", "tests/test_cleanup.py"),
    ("tests/test_chat_server.py::test_aws_errors_are_logged_but_not_shown_to_the_browser",
     "tests/test_chat_server.py"),
], ids=["7b-tgi-deploy", "7b-lmi-inference", "13b-lmi-deploy", "70b-tgi-inference",
        "7b-tgi-scale", "70b-lmi-scale", "side-by-side", "pair-runs-7b", "pair-runs-13b",
        "scale-runs-7b", "scale-runs-70b", "pair-runs-file", "browser-chat", "browser",
        "one-test-each", "one-variant-each", "file", "another-file"])
def test_each_kind_of_node_id_gets_its_unit(nodeid, unit):
    assert xdist_scope(nodeid) == unit


def test_every_recipe_notebook_is_in_its_recipes_unit():
    units = {xdist_scope(f"{path.relative_to(ROOT).as_posix()}::Cell 0")
             for path in recipe_notebooks(ROOT)}
    assert units == {"recipe pair 7b", "recipe pair 13b-tgi", "recipe pair 70b-tgi",
                     "recipe pair 13b-lmi", "recipe pair 70b-lmi",
                     "recipe scale 7b-tgi", "recipe scale 13b-tgi", "recipe scale 70b-tgi",
                     "recipe scale 7b-lmi", "recipe scale 13b-lmi", "recipe scale 70b-lmi"}
