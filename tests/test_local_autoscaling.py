"""Application Auto Scaling of inference components, checked against hand-computed timelines.

``scaling_scenario.py`` runs one stand-in on a manual clock in a child process (moto's
backends are global; the session's stand-in runs in this one) and reports what happened at
which simulated second. The set-up: one ml.g5.12xlarge (4 GPUs) up at t=120, at most 2;
a component of 1 copy (1 GPU, 4 streams per copy) serving from t=180; a target-tracking
policy on ConcurrentRequestsPerCopy at 2.0; a step policy (+1, cooldown 60) fired by an
alarm on NoCapacityInvocationFailures (Maximum, 30 s, >= 1); 12 streams held from t=180 to
t=600 (4 in flight, 8 queued); provisioning 240 s, copy start-up 60 s, idle release 600 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = Path(__file__).with_name("scaling_scenario.py")


@pytest.fixture(scope="module")
def timeline() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("AWS_", "HF_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(SCENARIO)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_concurrency_per_copy_is_in_flight_plus_queued_over_serving_copies(timeline):
    # 12 streams on 1 copy until 3 more copies serve at 270 (placed at 210 + 60 s start-up).
    assert timeline["concurrency"][:4] == [[180.0, 0.0], [190.0, 12.0], [200.0, 12.0],
                                           [210.0, 12.0]]
    assert [190.0, 12.0] in timeline["concurrency"] and [270.0, 3.0] in timeline["concurrency"]


def test_scale_out_after_three_datapoints_above_target(timeline):
    samples = timeline["samples"]
    assert samples["t200"]["copies"] == [1, 1] and samples["t200"]["alarms"]["high"] == "OK"
    # Datapoints at 190, 200, 210 are 12 > 2: AlarmHigh at 210; ceil(1 x 12 / 2) = 6.
    assert samples["t210"]["alarms"]["high"] == "ALARM"
    assert samples["t210"]["copies"] == [6, 1]
    assert timeline["activities"][0]["t"] == 210
    assert timeline["activities"][0]["description"] == "Setting desired copy count to 6."


def test_copies_fill_an_instance_then_wait_for_a_new_one(timeline):
    samples = timeline["samples"]
    # 3 more copies fit the first instance's free GPUs (serve at 270); the other 2 go on a
    # new instance (up at 210 + 240 = 450, serving at 510).
    assert samples["t400"]["copies"] == [6, 4] and samples["t400"]["instances"] == 1
    assert samples["t600"]["copies"] == [6, 6] and samples["t600"]["instances"] == 2


def test_the_scale_out_cooldown_holds_back_a_second_scale_out(timeline):
    # AlarmHigh stays in ALARM (3 per copy > 2) until the new copies serve, but no second
    # scale-out comes within the 300 s cooldown; at 510 the metric is back at the target.
    assert timeline["samples"]["t400"]["alarms"]["high"] == "ALARM"
    assert [a["t"] for a in timeline["activities"] if a["t"] < 1000] == [210]


def test_scale_in_after_fifteen_minutes_below_target(timeline):
    samples = timeline["samples"]
    # Load stops at 600; AlarmLow needs 15 one-minute datapoints below 0.9 x 2 = 1.8: the
    # windows 600-660 ... 1440-1500. ceil(6 x 0 / 2) = 0 copies.
    assert samples["t1490"]["copies"] == [6, 6]
    assert samples["t1500"]["alarms"]["low"] == "ALARM"
    assert samples["t1500"]["copies"] == [0, 0]
    assert timeline["activities"][1]["t"] == 1500


def test_instances_are_released_after_ten_idle_minutes(timeline):
    samples = timeline["samples"]
    assert samples["t2090"]["instances"] == 2
    assert samples["t2100"]["instances"] == 0  # idle since 1500, MinInstanceCount 0


def test_a_no_capacity_failure_brings_a_copy_back_through_the_step_policy(timeline):
    samples = timeline["samples"]
    assert timeline["errors"][0].startswith("Inference Component has no capacity")
    # The failure at 2200 falls in the alarm's period 2190-2220: ALARM at 2220, +1 copy.
    assert samples["t2210"]["copies"] == [0, 0]
    assert samples["t2220"]["alarms"]["nocap"] == "ALARM"
    assert samples["t2220"]["copies"] == [1, 0]
    step = timeline["activities"][2]
    assert step["t"] == 2220 and "ic-scale-from-zero" in step["cause"]
    # A new instance (up at 2460), then the copy's start-up: serving at 2520.
    assert samples["t2510"]["copies"] == [1, 0] and samples["t2510"]["instances"] == 1
    assert samples["t2520"]["copies"] == [1, 1]


def test_every_change_is_a_scaling_event_in_simulated_seconds(timeline):
    kinds = {(e["kind"], e["time_s"]) for e in timeline["events"]}
    assert ("scaling", 210.0) in kinds and ("scaling", 1500.0) in kinds
    assert ("instances", 2100.0) in kinds
    messages = [e["message"] for e in timeline["events"] if e["kind"] == "scaling"]
    assert any("copies 1 -> 6" in m for m in messages)


def test_invocations_per_copy_count_requests_that_got_a_copy(timeline):
    # 4 streams got the one copy in 180-190; the 8 queued got the 3 new copies at 270, the
    # end of the period 260-270 (8 over 4 serving copies).
    assert timeline["invocations"] == [[190.0, 4.0], [270.0, 2.0]]


def test_unknown_resources_are_refused_with_aws_texts(timeline):
    missing, register, policy = timeline["errors"][1:4]
    assert missing == (
        'ValidationException: Could not find inference component '
        '"arn:aws:sagemaker:us-east-1:123456789012:inference-component/missing".')
    assert register.startswith("ValidationException: The inference component missing")
    assert policy == (
        "ValidationException: No scalable target registered for service namespace: "
        "sagemaker, resource ID: inference-component/missing, scalable dimension: "
        "sagemaker:inference-component:DesiredCopyCount")


def test_targets_policies_and_their_alarms_are_described(timeline):
    registered = timeline["registered"]
    assert registered["targets"] == ["inference-component/ic-scale"]
    assert registered["policies"] == ["from-zero", "track"]
    assert registered["alarms"] == 3  # AlarmHigh and AlarmLow of the policy, and ours


def test_clean_up_in_order_leaves_nothing(timeline):
    assert timeline["left"] == {"targets": [], "policies": [], "alarms": [], "components": [],
                                "endpoints": [], "configs": [], "models": []}
