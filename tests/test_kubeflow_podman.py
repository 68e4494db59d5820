"""kubeflow.podman: where podman cannot run containers, make kubeflow-local stops with podman's
own reason (a podman stand-in on PATH plays a host whose runtime refuses to start)."""
from __future__ import annotations

import os
import stat

import pytest

from kubeflow.podman import Podman, PodmanError


def _fake_podman(folder, body: str) -> dict:
    script = folder / "podman"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_a_host_where_containers_cannot_run_is_an_error_with_podmans_reason(tmp_path, monkeypatch):
    env = _fake_podman(tmp_path, 'echo "Error: runc: cgroups: cannot find cgroup mount destination" >&2\nexit 126\n')
    monkeypatch.setenv("PATH", env["PATH"])
    with pytest.raises(PodmanError, match="podman cannot run containers on this host.*cannot find cgroup mount"):
        Podman().check_runs("localhost/movielens-tfx:local")


def test_the_flags_this_project_needs_are_passed_to_every_command(tmp_path, monkeypatch):
    log = tmp_path / "args"
    env = _fake_podman(tmp_path, f'echo "$@" >> {log}\necho 3804939702\n')
    monkeypatch.setenv("PATH", env["PATH"])
    podman = Podman(conf=str(tmp_path / "containers.conf"))
    assert podman.image_size("img") == 3804939702
    assert log.read_text().split()[:4] == ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    assert podman.env["CONTAINERS_CONF"] == str(tmp_path / "containers.conf")


def test_without_podman_it_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PodmanError, match="podman is not installed.*provision_podman"):
        Podman()
