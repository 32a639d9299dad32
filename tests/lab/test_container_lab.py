"""The docker compose lab's images, built and run with Podman
(sip-lab/docker/podman-lab): a call connect through the containerised Asterisk
and phones, its recording checked as the lab's are, and the containers' configs
checked against the ones sip-lab/lab installs.

The pod has its own network namespace, so it runs next to the lab, which holds
the same ports on the host; the controller joins the pod's namespace
(`podman-lab exec`)."""

from __future__ import annotations

import audioop
import json
import os
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "sip-lab" / "lab"
PODMAN_LAB = REPO / "sip-lab" / "docker" / "podman-lab"
CONFIG = REPO / "sip-lab" / "docker" / "callconnect.toml"
ASTERISK_CONTAINER = "callconnect-lab-asterisk"
# First run on a fresh machine: two debootstraps and two image builds.
BUILD_TIMEOUT = 1200


# The container lab's media folders are its mounts, which its config names: a
# lab run may point these at its own lab's root instead.
MEDIA_OVERRIDES = ("CALLCONNECT_MEDIA_WHISPER_DIR", "CALLCONNECT_MEDIA_RECORDING_DIR")


def podman_lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name not in MEDIA_OVERRIDES}
    return subprocess.run([PODMAN_LAB, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


@pytest.fixture(scope="module")
def container_lab() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the container lab runs Podman as root: run `sudo make test`")
    started = podman_lab("up", timeout=BUILD_TIMEOUT)
    print(started.stdout)
    if started.returncode != 0:
        podman_lab("down")
        pytest.fail(f"the container lab did not start (sip-lab/docker/podman-lab up):\n"
                    f"{started.stdout}{started.stderr}")
    yield
    podman_lab("down")


def in_container(*command: str) -> str:
    """A command's output from inside the Asterisk container."""
    env = {**os.environ, "CONTAINERS_CONF": str(REPO / ".lab" / "podman" / "containers.conf")}
    done = subprocess.run(["podman", "exec", ASTERISK_CONTAINER, *command], capture_output=True,
                          text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.lab
def test_a_call_connects_through_the_containers_and_is_recorded(container_lab: None) -> None:
    # The controller on the host, in the pod's network: AMI at 127.0.0.1:5038
    # as the config says. Leg B is the config's group, as on the lab.
    done = podman_lab(
        "exec", "env", f"PYTHONPATH={REPO}", sys.executable, "-m", "controller",
        "--config", str(CONFIG), "call", "--leg-a", "+27115550101", "--leg-b", "group:lab-desk",
        "--whisper", "Connecting you to John Smith from the website form",
        "--time-limit", "4", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed", result["reason"]
    assert result["whisper_played"] is True
    assert result["answered_by"] == "+27115550202"
    assert result["leg_a"]["hangup_cause"] == result["leg_b"]["hangup_cause"] == 16

    # Written by Asterisk in the container into the mounted host folder.
    recording = Path(result["recording"]["path"])
    assert recording.parent.resolve() == (REPO / ".lab" / "docker" / "recordings").resolve()
    with wave.open(str(recording)) as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        seconds = audio.getnframes() / audio.getframerate()
        level = audioop.rms(audio.readframes(audio.getnframes()), 2)
    assert abs(seconds - result["talk_seconds"]) < 0.7, (seconds, result["talk_seconds"])
    assert level > 1000, f"recording is near silence (RMS {level})"


def lab_installed_configs() -> dict[str, str]:
    """What sip-lab/lab installs into its root's /etc/asterisk, by file name."""
    root = Path(os.environ.get("CALLCONNECT_LAB_DIR", REPO / ".lab")) / "root" / "etc" / "asterisk"
    assert root.is_dir(), f"no lab root at {root}"
    names = [conf.name for conf in (REPO / "sip-lab" / "asterisk").glob("*.conf")]
    names += ["extensions_callconnect.conf", "manager.d/callconnect.conf"]
    return {name: (root / name).read_text() for name in names}


@pytest.mark.lab
def test_the_containers_asterisk_has_the_labs_configs_and_music(lab: None, container_lab: None) -> None:
    for name, text in lab_installed_configs().items():
        assert in_container("cat", f"/etc/asterisk/{name}") == text, f"{name} differs from the lab's"
    # The folder musiconhold.conf names holds the lab's tune in both.
    on_lab = subprocess.run([LAB, "cli", "moh show files"], capture_output=True, text=True,
                            timeout=30).stdout
    in_pod = podman_lab("cli", "moh show files").stdout
    tune = "Class: default\n\tFile: /var/lib/callconnect/moh/tune"
    assert tune in on_lab, on_lab
    assert tune in in_pod, in_pod
