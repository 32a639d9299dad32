"""The container lab (sip-lab/docker/) says what the lab (sip-lab/lab) says:
the same controller config but for where the media folders are, and an image
build context that holds what the Dockerfiles copy and nothing else. The
Asterisk files inside the running containers are compared with the lab's in
tests/lab/test_container_lab.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "sip-lab" / "docker"
MEDIA_FOLDERS = ("whisper_dir", "recording_dir")


def without_media_folders(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    config = tomllib.loads(path.read_text())
    folders = {name: config["media"].pop(name) for name in MEDIA_FOLDERS}
    return config, folders


def test_the_container_labs_controller_config_is_the_labs() -> None:
    lab, _ = without_media_folders(REPO / "sip-lab" / "callconnect.toml")
    containers, folders = without_media_folders(DOCKER / "callconnect.toml")
    assert containers == lab
    # Its media folders are the host side of the Asterisk container's mounts.
    compose = (DOCKER / "compose.yaml").read_text()
    for name, folder in folders.items():
        switch_dir = containers["media"][name.replace("_dir", "_switch_dir")]
        assert f"- {folder}:{switch_dir}\n" in compose, (name, folder)


def test_the_build_context_holds_what_the_dockerfiles_copy_and_nothing_else() -> None:
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    # Everything is left out (.venv, .lab, .git, ...) but what is let back in.
    assert rules[0] == "*"
    let_in = [rule[1:] for rule in rules[1:]]
    assert all(rule.startswith("!") for rule in rules[1:]), rules
    for dockerfile in DOCKER.glob("Dockerfile.*"):
        for source in re.findall(r"^COPY (\S+) ", dockerfile.read_text(), re.MULTILINE):
            assert any(source.startswith(allowed) for allowed in let_in), \
                f"{dockerfile.name} copies {source}, which .dockerignore leaves out"
