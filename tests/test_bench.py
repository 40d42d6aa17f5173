"""The benchmark harness's own arithmetic and bookkeeping, with fake flows (no server)."""

from __future__ import annotations

import time
import types

import pytest

from bench import ratio
from bench.flows import Users
from bench.ratio import pct, run_phase


def no_pids() -> list[int]:
    return []


def test_percentiles_by_nearest_rank():
    assert pct([i / 1000 for i in range(1, 101)], 0.99) == pytest.approx(99)
    assert pct([0.001, 0.002], 0.5) == pytest.approx(1)
    assert pct([0.005], 0.99) == pytest.approx(5)


def test_any_exception_is_a_failed_flow_not_a_lost_thread():
    def step(idp, browser, recorder):
        raise ValueError("a page the client could not read")

    phase = run_phase(1, step, 2, 0.05, no_pids, limit=6)
    assert len(phase.errors) == 6
    assert phase.errors[0] == "ValueError: a page the client could not read"


def test_closed_loop_counts_no_flow_before_the_start():
    def step(idp, browser, recorder):
        time.sleep(0.02)

    phase = run_phase(1, step, 1, 0.2, no_pids)
    assert phase.count <= 11  # 13 when flows began 50 ms before the timed start


def test_paced_flows_held_up_by_a_stall_count_their_wait():
    began = time.perf_counter()

    def step(idp, browser, recorder):  # every flow starting in [0.1 s, 0.3 s) ends at 0.3 s
        now = time.perf_counter() - began
        time.sleep(0.3 - now if 0.1 <= now < 0.3 else 0.001)

    phase = run_phase(1, step, 2, 0.4, no_pids, rate=100)
    assert phase.late > 5
    assert max(phase.recorder.latencies["whole flow"]) > 0.15


def test_a_totp_pool_gives_two_steps_a_user_then_says_so():
    users = Users("t", 10)
    assert users.totp_flows(0) == 20
    step = int(time.time() // 30)
    for _ in range(20):
        users.done(users.take_totp()[0])
    try:
        users.take_totp()
    except RuntimeError as e:
        assert "seed more users" in str(e)
    else:  # only a new time step gives one more
        assert int(time.time() // 30) != step


def test_a_bridge_that_fails_to_start_leaves_no_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(ratio.tempfile, "tempdir", str(tmp_path))

    def server(*args, **kwargs):
        raise RuntimeError("did not start")

    monkeypatch.setattr(ratio, "Server", server)
    args = types.SimpleNamespace(server_core=0, users=3, workers=1)
    with pytest.raises(RuntimeError, match="did not start"):
        ratio.Bridge("sqlite", args, lambda line: None)
    assert list(tmp_path.iterdir()) == []
