"""``import common`` loads its public names on first use (PEP 562), with the same names.

Each check runs in a fresh interpreter, since this test process has imported most of
``common`` already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import common

HEAVY = ("ipywidgets", "matplotlib", "jinja2", "sagemaker", "aiobotocore", "aiohttp", "boto3",
         "huggingface_hub", "IPython", "common.presets", "common.display", "common.preflight")


def _fresh(code: str) -> object:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    return json.loads(done.stdout)


def test_the_load_tool_imports_nothing_it_does_not_use():
    loaded = _fresh("import json, sys, common.bench; print(json.dumps(sorted(sys.modules)))")
    assert [name for name in HEAVY if name in loaded] == []
    assert "common.metrics" in loaded


def test_every_public_name_resolves_and_the_list_is_the_same():
    assert len(common.__all__) == len(set(common.__all__)) >= 98  # none lost since the change
    for name in common.__all__:
        assert getattr(common, name) is not None
    assert set(common.__all__) <= set(dir(common))
    assert common.iter_text is common.streaming.iter_text  # submodules are attributes too


def test_importing_the_preflight_submodule_keeps_the_preflight_function():
    kinds = _fresh("import json, common.preflight, common; from common import preflight; "
                   "import common.preflight as p; "
                   "print(json.dumps([callable(common.preflight), "
                   "type(common.preflight).__name__, type(preflight).__name__, "
                   "type(p).__name__, hasattr(sys.modules['common.preflight'], "
                   "'check_quota')]))".replace("import json,", "import json, sys,"))
    assert kinds == [True, "function", "function", "function", True]


def test_an_unknown_name_is_an_attribute_error():
    try:
        common.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("common.no_such_name did not raise AttributeError")
