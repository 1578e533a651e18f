"""The Makefile's set-up leaves no setting of ours on the system."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_install_step_removes_its_createcluster_setting_after_installing(tmp_path):
    """The file that stops postgresql-common from starting a default cluster exists while apt-get installs, then is gone."""
    conf = tmp_path / "etc" / "createcluster.d" / "sb3-gap-install.conf"
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "dpkg").write_text("#!/bin/sh\nexit 1\n")  # every system package is missing
    (shims / "apt-get").write_text(f'#!/bin/sh\necho "$@ $(cat {conf} 2>/dev/null)" >> {tmp_path / "apt.log"}\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    venv = tmp_path / "venv"
    printed = subprocess.run(
        ["make", "-n", "-C", str(ROOT), f"VENV={venv}", f"CREATECLUSTER={conf}", f"{venv}/.sb3_gap-installed"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    install_system_packages = printed.split("\npython3 -m venv")[0]  # the recipe's first command: the apt-get step
    subprocess.run(["bash", "-c", install_system_packages], check=True, env=dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}"))
    log = (tmp_path / "apt.log").read_text()
    assert "install -y libqt5gui5 postgresql create_main_cluster = false" in log  # the setting held during the install
    assert not conf.exists() and not conf.parent.exists()  # and nothing of ours is left
