"""Real Chromium (Debian's) driven by Playwright, and real servers started as processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("STEPUP_CHROMIUM", "/usr/bin/chromium")
# Offline, as root: without these flags Chromium stalls on its background network calls.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 30, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def stepup_process(args: list[str], env: dict[str, str], ready_url: str, log: Path):
    """Run ``stepup ARGS`` until the block ends; its output goes to ``log``."""
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "bridge.cli", *args], cwd=REPO,
                                   env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            wait_for(ready_url, process=process)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def chromium_page(width: int = 900, height: int = 1000):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def enter_recovery_code(page, code: str) -> None:
    """At the bridge's TOTP page: switch to the recovery-code form and submit ``code``."""
    page.click("#use-recovery-code")
    page.fill("input[name=recovery_code]", code)
    page.click("text=Verify recovery code")
