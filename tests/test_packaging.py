"""The bridge as ``pip install`` from a clone (not editable) gets it: a wheel built from the
tracked sources carries every module, page, message catalogue and migration. An editable
install (scripts/bootstrap.sh) would not notice a package left out of ``pyproject.toml``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What the wheel is built from, as the repository tracks it.
SOURCES = ["pyproject.toml", "setup.py", "README.md", "bridge", "plugin/keycloak/stepup_keycloak"]
KEYCLOAK = "plugin/keycloak/"


def tracked() -> list[str]:
    # safe.directory: git refuses a clone another user owns (CI's checkout may be one).
    listed = subprocess.run(["git", "-c", f"safe.directory={REPO}", "ls-files", "-z", *SOURCES],
                            cwd=REPO, check=True, capture_output=True).stdout.decode()
    return [name for name in listed.split("\0") if name]


def test_the_wheel_carries_every_module_page_and_catalogue(tmp_path):
    files = tracked()
    source = tmp_path / "src"
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path / "out"), str(source)], check=True, capture_output=True)
    [wheel] = (tmp_path / "out").glob("stepup_bridge-*.whl")
    carried = set(zipfile.ZipFile(wheel).namelist())

    expected = {name.removeprefix(KEYCLOAK) for name in files
                if name.startswith(("bridge/", KEYCLOAK))}
    expected |= {name.replace(".po", ".mo") for name in expected if name.endswith(".po")}
    assert sorted(expected - carried) == []
    assert any(name.startswith("bridge/notify/") for name in carried)  # what was once left out
