"""The ratio benchmark runs end to end (a smoke run: it must complete every flow it starts;
no figure is asserted — speed is only ever measured, in bench/)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.e2e


def test_ratio_benchmark_completes_every_kind_of_flow(tmp_path):
    report = tmp_path / "report.txt"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--databases", "sqlite", "--seconds", "1",
         "--rounds", "2", "--users", "2000", "--instrumented-flows", "2", "--out", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    text = report.read_text()
    assert "!!" not in text, text  # a failed flow or a client-bound figure
    for line in ("four-request flows/s", "shaped flows/s", "TOTP step-ups/s",
                 "server CPU per step-up", "POST /flow/<id>/totp", "recovery-code step-ups/s",
                 "enrollments/s", "statements", "RSS"):
        assert line in text, line


def test_instruction_count_benchmark_measures_both_kinds():
    run = subprocess.run([sys.executable, "-m", "bench.instructions", "--flows", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = dict(re.findall(r"^\s+(\S.*?)\s+([\d.]+) M instructions$", run.stdout, re.M))
    assert set(figures) == {"trivial request", "TOTP step-up (4 requests)",
                            "step-up beyond 4 trivial", "bare-Flask shape (4 requests)"
                            }, run.stdout  # each made its four requests (the labels say so)
    trivial, shape, stepup = (float(figures[k]) for k in (
        "trivial request", "bare-Flask shape (4 requests)", "TOTP step-up (4 requests)"))
    assert 0 < 4 * trivial < shape < stepup


def test_qr_benchmark_compares_the_fixed_mask_with_all_eight():
    run = subprocess.run([sys.executable, "-m", "bench.qr", "--codes", "5"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.search(r"masks scored .* [\d.]+ ms CPU a code", run.stdout), run.stdout
    assert re.search(r"not read back by zxing: \d of 5 scored, \d of 5 with mask 4", run.stdout)
    masks = re.findall(r"^\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+(\d+)%$", run.stdout, re.M)
    assert [int(mask) for mask, *_ in masks] == list(range(8)), run.stdout
    assert all(1 <= float(median) <= float(worst) for _, median, worst, _ in masks)
    assert sum(int(best) for *_, best in masks) >= 99  # every code has a best mask (ties: more)


def test_browser_extras_benchmark_prices_what_a_browser_sent_beside_a_step_up():
    run = subprocess.run([sys.executable, "-m", "bench.browser_extras", "--rounds", "1",
                          "--calls", "5"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    extras, stepup, ratio = (float(x) for x in re.findall(
        r"^(?:two revalidations and a favicon 404|TOTP step-up \(4 requests\)|ratio)\s+([\d.]+)",
        run.stdout, re.M))
    assert 0 < extras < stepup and ratio > 0, run.stdout
