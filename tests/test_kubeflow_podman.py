"""kubeflow.podman: where podman cannot run containers, make kubeflow-local stops with podman's
own reason (a podman stand-in on PATH plays a host whose runtime refuses to start)."""
from __future__ import annotations

import os
import stat
import subprocess

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


@pytest.mark.slow
def test_a_rebuild_removes_the_image_its_name_held_and_keeps_one_still_named_elsewhere(tmp_path):
    """Real podman, two tiny images FROM scratch: what make kubeflow-local does after each build."""
    import shutil
    import uuid

    if shutil.which("podman") is None:
        pytest.skip("podman is not installed here (tools/provision_podman.sh installs it)")
    conf = os.path.join(os.path.dirname(__file__), os.pardir, ".podman", "containers.conf")
    podman = Podman(conf=conf if os.path.exists(conf) else None)
    name = f"localhost/movielens-tfx-test-{uuid.uuid4().hex[:8]}:local"
    kept = name.replace(":local", ":kept")

    def build(content: str) -> str:  # two layers, as the pipeline image's stages have many
        (tmp_path / "Containerfile").write_text("FROM scratch\nCOPY built.txt /built.txt\nCOPY same.txt /same.txt\n")
        (tmp_path / "built.txt").write_text(content)
        (tmp_path / "same.txt").write_text("same")
        podman.output("build", "--quiet", "--tag", name, str(tmp_path), timeout=300)
        return podman.image_id(name)

    def parent(image: str) -> str:
        return podman.output("image", "inspect", "--format", "{{.Parent}}", image).strip()

    try:
        first = build("first")
        first_parent = parent(first)
        assert first and not podman.remove_replaced(first, name)  # still named: nothing replaced it
        second = build("second")
        assert second != first and podman.remove_replaced(first, name)
        assert not podman.image_exists(first) and podman.image_exists(second)
        assert first_parent and not podman.image_exists(first_parent)  # its untagged layer went with it
        podman.output("tag", second, kept)  # a second name keeps it
        third = build("third")
        assert not podman.remove_replaced(second, name) and podman.image_exists(kept)
        assert podman.image_id(name) == third and podman.image_id("localhost/no-such-image:x") is None
    finally:
        for image in (name, kept):
            subprocess.run(podman.command("rmi", "--force", image), env=podman.env, capture_output=True)
