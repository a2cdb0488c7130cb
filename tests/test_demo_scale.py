"""`python -m common.local demo --recipe scale`: its options and its closing timeline."""

from __future__ import annotations

import pytest

from common.local.__main__ import build_parser
from common.local.demo import SCALE_DEMO_STACK, DemoError, scale_notebook, scaling_timeline


def test_the_scale_recipe_is_a_demo_option():
    args = build_parser().parse_args(["demo", "--recipe", "scale", "--container", "lmi"])
    assert (args.recipe, args.container, args.size) == ("scale", "lmi", "7b")
    assert build_parser().parse_args(["demo"]).recipe == "stream"
    assert scale_notebook("lmi", "7b").name == "3-scale-llama-2-7b-chat-lmi.ipynb"
    assert SCALE_DEMO_STACK["time_scale"] > 1 and SCALE_DEMO_STACK["copy_concurrency"] >= 1


def test_a_missing_scale_notebook_says_how_to_render_it(tmp_path):
    with pytest.raises(DemoError, match=r"common\.notebooks render"):
        scale_notebook("tgi", "7b", root=tmp_path)


def test_the_timeline_is_short_and_counts_from_the_first_event():
    events = [
        {"time_s": 1000.0, "kind": "component", "resource": "x-ic", "message": "Creating"},
        {"time_s": 1010.0, "kind": "alarm", "resource": "x-ic-no-capacity",
         "message": "INSUFFICIENT_DATA: 0 of the last 1 datapoints"},
        {"time_s": 1600.0, "kind": "alarm",
         "resource": "TargetTracking-inference-component/x-ic-AlarmHigh-1234",
         "message": "ALARM: 3 of the last 3 datapoints; 3 needed to alarm."},
        {"time_s": 1600.0, "kind": "copies", "resource": "x-ic",
         "message": "desired copies 1 -> 3 (Application Auto Scaling: monitor alarm ...)"},
        {"time_s": 1600.0, "kind": "scaling", "resource": "inference-component/x-ic",
         "message": "copies 1 -> 3: ..."},
        {"time_s": 2400.0, "kind": "alarm", "resource": "x-ic-no-capacity",
         "message": "ALARM: 1 of the last 1 datapoints; 1 needed to alarm."},
    ]
    assert scaling_timeline(events) == [
        "t+     0 s  component Creating",
        "t+   600 s  alarm     target-tracking high alarm: ALARM: 3 of the last 3 datapoints",
        "t+   600 s  copies    desired copies 1 -> 3",
        "t+  1400 s  alarm     no-capacity alarm: ALARM: 1 of the last 1 datapoints",
    ]
    assert scaling_timeline([]) == []
