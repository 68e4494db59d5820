"""Podman, as `make kubeflow-local` drives it: build the pipeline image, run a step in it.

One concept: the podman command line with the settings this project needs on hosts like CI's
(tools/provision_podman.sh writes them into a containers.conf; the same ones are passed as
flags, so a podman that ignores CONTAINERS_CONF behaves the same): runtime runc (crun refuses
hybrid cgroups), cgroupfs cgroups, no default ulimits.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Mapping, Sequence

from common.errors import UserError


class PodmanError(UserError):
    """A podman command failed; the message says which and ends with its output."""


@dataclass
class Podman:
    """The podman CLI with the project's containers.conf (``conf``)."""

    conf: str | None = None
    flags: tuple[str, ...] = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
    sink: IO[str] = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        if shutil.which("podman") is None:
            raise PodmanError("podman is not installed (tools/provision_podman.sh installs it with apt-get)")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **({"CONTAINERS_CONF": self.conf} if self.conf else {})}

    def command(self, *args: str) -> list[str]:
        return ["podman", *self.flags, *args]

    def output(self, *args: str, timeout: float | None = None) -> str:
        """A podman command's stdout; PodmanError with its stderr when it fails."""
        try:
            done = subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PodmanError(f"podman {' '.join(args[:2])} did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args[:2])} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        return done.stdout

    def stream(self, args: Sequence[str], prefix: str, timeout: float | None = None,
               log: IO[str] | None = None) -> tuple[int, float, list[str]]:
        """Runs a podman command, its output lines to ``sink`` prefixed (and to ``log``);
        returns (exit status, seconds, the last 40 lines)."""
        started = time.perf_counter()
        proc = subprocess.Popen(self.command(*args), env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        tail: list[str] = []

        def relay() -> None:
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                del tail[:-40]
                self.sink.write(f"{prefix} {line}\n")
                if log is not None:
                    log.write(line + "\n")

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        return proc.returncode, time.perf_counter() - started, tail

    def image_exists(self, image: str) -> bool:
        return subprocess.run(self.command("image", "exists", image), env=self.env).returncode == 0

    def try_pull(self, image: str, timeout: float = 120) -> str | None:
        """Pulls ``image``; None on success, else why not (no registry reachable, here)."""
        try:
            self.output("pull", "--quiet", image, timeout=timeout)
            return None
        except PodmanError as error:
            return str(error).splitlines()[-1][-300:]

    def image_id(self, image: str) -> str | None:
        """The ID of the image ``image`` names now; None where no image has that name."""
        done = subprocess.run(self.command("image", "inspect", "--format", "{{.Id}}", image), env=self.env,
                              capture_output=True, text=True)
        return (done.stdout.strip() or None) if done.returncode == 0 else None

    def remove_replaced(self, old_id: str | None, image: str) -> bool:
        """Removes the image ``image`` named before a rebuild moved the name to a new one.

        Why: each rebuild of a changed tree leaves the old image behind untagged (~4 GB for the
        pipeline image), and CI hosts ran out of disk. It is removed only when no name is left on
        it (one given elsewhere keeps it); podman refuses while a container uses it, and removes
        with it its untagged parent layers that nothing else builds on, so the cached dependency
        layers of the new build stay. True when it was removed.
        """
        if old_id is None or old_id == self.image_id(image):
            return False
        try:
            names = self.output("image", "inspect", "--format", "{{len .RepoTags}}", old_id).strip()
        except PodmanError:  # gone already
            return False
        if names != "0":
            return False
        return subprocess.run(self.command("rmi", old_id), env=self.env, capture_output=True).returncode == 0

    def image_size(self, image: str) -> int:
        """The image's size in bytes, as `podman images` reports it."""
        return int(self.output("image", "inspect", "--format", "{{.Size}}", image).strip())

    def check_runs(self, image: str) -> None:
        """Runs `true` in ``image``; PodmanError saying why containers cannot run here."""
        try:
            self.output("run", "--rm", "--network=none", image, "true", timeout=120)
        except PodmanError as error:
            raise PodmanError(f"podman cannot run containers on this host, so the pipeline's steps cannot run "
                              f"in the image: {error}") from None

    def run(self, image: str, command: Sequence[str], *, prefix: str, user: str | None = None,
            volumes: Sequence[tuple[str, str, str]] = (), env: Mapping[str, str] | None = None,
            workdir: str | None = None, network: str = "none", timeout: float | None = None,
            log: IO[str] | None = None) -> tuple[int, float, list[str]]:
        """`podman run --rm` of ``command`` in ``image``: volumes as (host, container, mode)."""
        args = ["run", "--rm", f"--network={network}"]
        if user:
            args.append(f"--user={user}")
        for host, container, mode in volumes:
            args.append(f"--volume={host}:{container}:{mode}")
        for key, value in (env or {}).items():
            args.append(f"--env={key}={value}")
        if workdir:
            args.append(f"--workdir={workdir}")
        args.append(image)
        args.extend(command)
        return self.stream(args, prefix, timeout=timeout, log=log)
