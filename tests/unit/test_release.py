"""hack/image.sh's commands, read from its --dry-run."""

from __future__ import annotations

import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
OPERATOR = f"ghcr.io/servicelink/servicelink:{VERSION}"
APP = f"ghcr.io/servicelink/gallery-app:{VERSION}"


def image_sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "hack" / "image.sh"), *args], capture_output=True, text=True, timeout=30, check=False
    )


def dry_run(*args: str) -> list[list[str]]:
    """The commands ``hack/image.sh --dry-run ARGS`` prints, split into words."""
    done = image_sh("--dry-run", *args)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines()]


def builds(commands: list[list[str]]) -> set[tuple[str, str, frozenset[str]]]:
    """(Dockerfile, context, tags) of each ``docker build`` among the commands."""
    found = set()
    for words in commands:
        if words[:2] == ["docker", "build"]:
            tags = frozenset(words[i + 1] for i, word in enumerate(words) if word == "-t")
            found.add((words[words.index("-f") + 1], words[-1], tags))
    return found


# hack/image.sh


def test_image_sh_builds_the_tags_manifests_name_from_the_dockerfiles() -> None:
    assert dry_run() == [
        ["docker", "build", "--network", "host", "-f", "Dockerfile", "-t", OPERATOR, "."],
        [
            "docker",
            "build",
            "--network",
            "host",
            "-f",
            "examples/gallery/app/Dockerfile",
            "-t",
            APP,
            "examples/gallery/app",
        ],
    ]


def test_image_sh_tags_for_a_registry_and_pushes_its_tags() -> None:
    commands = dry_run("--registry", "registry.example.com/team/", "--push")
    mine = (f"registry.example.com/team/servicelink:{VERSION}", f"registry.example.com/team/gallery-app:{VERSION}")
    assert builds(commands) == {
        ("Dockerfile", ".", frozenset({OPERATOR, mine[0]})),
        ("examples/gallery/app/Dockerfile", "examples/gallery/app", frozenset({APP, mine[1]})),
    }
    assert commands[2:] == [["docker", "push", mine[0]], ["docker", "push", mine[1]]]


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        ("kind", [["kind", "load", "docker-image", OPERATOR, APP]]),
        ("kind:dev", [["kind", "load", "docker-image", "--name", "dev", OPERATOR, APP]]),
        ("k3d", [["k3d", "image", "import", OPERATOR, APP]]),
        ("k3d:dev", [["k3d", "image", "import", "--cluster", "dev", OPERATOR, APP]]),
        ("minikube", [["minikube", "image", "load", OPERATOR], ["minikube", "image", "load", APP]]),
        (
            "minikube:dev",
            [["minikube", "--profile", "dev", "image", "load", tag] for tag in (OPERATOR, APP)],
        ),
    ],
)
def test_image_sh_loads_the_tags_manifests_name_into_a_local_cluster(load: str, expected: list[list[str]]) -> None:
    assert dry_run("--load", load)[2:] == expected


def test_image_sh_loads_and_saves_the_registrys_tags_when_one_is_named(tmp_path: Path) -> None:
    commands = dry_run("--registry", "localhost:5000", "--load", "kind", "--save", str(tmp_path))
    mine = [f"localhost:5000/servicelink:{VERSION}", f"localhost:5000/gallery-app:{VERSION}"]
    assert commands[2:] == [
        ["kind", "load", "docker-image", *mine],
        ["mkdir", "-p", str(tmp_path)],
        ["docker", "save", "-o", str(tmp_path / "servicelink.tar"), mine[0]],
        ["docker", "save", "-o", str(tmp_path / "gallery-app.tar"), mine[1]],
    ]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--push"], "--push needs --registry"),
        (["--registry"], "--registry needs a value"),
        (["--registry", "--push"], "--registry needs a value"),
        (["--registry", "registry.example.com/team:1.0"], "without a tag or a digest"),
        (["--registry", "registry.example.com/team@sha256:ab"], "without a tag or a digest"),
        (["--load", "docker-desktop"], "--load takes kind[:CLUSTER], k3d[:CLUSTER] or minikube[:PROFILE]"),
        (["--load", "kind:"], "name the cluster after the colon"),
        (["--save"], "--save needs a value"),
        (["--tag", "x"], "unknown argument '--tag'"),
    ],
)
def test_image_sh_refuses_what_it_cannot_do_before_building(args: list[str], message: str) -> None:
    done = image_sh("--dry-run", *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert message in done.stderr
