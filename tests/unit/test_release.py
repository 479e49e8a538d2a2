"""hack/image.sh's commands (from --dry-run) and .github/workflows/release.yml, which builds the same images."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicelink.testing.assets import ensure_helm

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
OPERATOR = f"ghcr.io/servicelink/servicelink:{VERSION}"
APP = f"ghcr.io/servicelink/gallery-app:{VERSION}"
PLATFORMS = {"linux/amd64", "linux/arm64"}


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


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    result: list[dict[str, Any]] = job["steps"]
    return result


def step(workflow: dict[Any, Any], name: str) -> dict[str, Any]:
    (found,) = [s for s in steps(workflow) if s.get("name") == name]
    return found


def expand(text: str, workflow: dict[Any, Any]) -> str:
    """GitHub's ``${{ ... }}`` expressions this workflow uses, as they read on the tag of this version."""
    known = {
        "env.REGISTRY": workflow["env"]["REGISTRY"],
        "steps.version.outputs.version": VERSION,
        "secrets.GITHUB_TOKEN": "token",
        "github.actor": "someone",
    }
    return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: known[m.group(1)], text)


def run_step(
    workflow: dict[Any, Any], name: str, cwd: Path, *, ref: str = f"v{VERSION}", path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a step's script as the runner would (``bash -e``), in CWD, with PATH's front at PATH."""
    s = step(workflow, name)
    env = {
        **os.environ,
        "REGISTRY": workflow["env"]["REGISTRY"],
        "GITHUB_REF_NAME": ref,
        "GITHUB_ACTOR": "someone",
        "GITHUB_OUTPUT": str(cwd / "github-output"),
        **{key: expand(str(value), workflow) for key, value in s.get("env", {}).items()},
    }
    if path is not None:
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", s["run"]], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def recorder(folder: Path, name: str, *, real: str | None = None, passing: str = "") -> Path:
    """A NAME on the PATH that records its arguments in folder/NAME.log, and hands ``passing`` calls to REAL."""
    folder.mkdir(exist_ok=True)
    shim = folder / name
    hand_over = f'[ "$1" = "{passing}" ] && exec {shlex.quote(real)} "$@"\n' if real else ""
    shim.write_text(f'#!/bin/sh\necho "$*" >>{shlex.quote(str(folder / name))}.log\n{hand_over}exit 0\n')
    shim.chmod(0o755)
    return folder


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


# .github/workflows/release.yml


def test_the_release_runs_on_a_version_tag(workflow: dict[Any, Any]) -> None:
    # PyYAML reads the bare key `on` as True.
    assert workflow[True] == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {"contents": "write", "packages": "write"}


def test_the_release_builds_for_both_platforms_what_image_sh_builds_for_its_registry(workflow: dict[Any, Any]) -> None:
    pushed = [s["with"] for s in steps(workflow) if s.get("uses", "").startswith("docker/build-push-action@")]
    assert all({*w["platforms"].split(",")} == PLATFORMS and w["push"] is True for w in pushed)
    in_workflow = {(w["file"], w["context"], frozenset({expand(w["tags"], workflow)})) for w in pushed}
    in_image_sh = {
        (file, context, frozenset(tag for tag in tags if tag.startswith(f"{workflow['env']['REGISTRY']}/")))
        for file, context, tags in builds(dry_run("--registry", workflow["env"]["REGISTRY"]))
    }
    assert in_workflow == in_image_sh
    assert {tag for _, _, tags in in_workflow for tag in tags} == {OPERATOR, APP}
    uses = [s.get("uses", "").split("@")[0] for s in steps(workflow)]
    assert (
        uses.index("docker/setup-qemu-action")
        < uses.index("docker/setup-buildx-action")
        < uses.index("docker/build-push-action")
    )


def test_the_release_takes_its_version_from_pyproject_and_refuses_a_tag_that_names_another(
    workflow: dict[Any, Any], tmp_path: Path
) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    done = run_step(workflow, "Version", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "github-output").read_text() == f"version={VERSION}\n"

    (tmp_path / "github-output").unlink()
    done = run_step(workflow, "Version", tmp_path, ref="v0.0.1")
    assert done.returncode == 1
    assert f"tag v0.0.1, but pyproject.toml says {VERSION}" in done.stdout
    assert not (tmp_path / "github-output").exists()


def test_the_release_pushes_the_chart_it_packaged(workflow: dict[Any, Any], tmp_path: Path) -> None:
    (tmp_path / "charts").symlink_to(REPO / "charts")
    bin_dir = recorder(tmp_path / "bin", "helm", real=ensure_helm(log=False), passing="package")
    done = run_step(workflow, "Chart", tmp_path, path=bin_dir)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "dist" / f"servicelink-{VERSION}.tgz").is_file()
    assert (bin_dir / "helm.log").read_text().splitlines()[1:] == [
        "registry login ghcr.io --username someone --password-stdin",
        f"push dist/servicelink-{VERSION}.tgz oci://ghcr.io/servicelink/charts",
    ]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the manifests")
def test_the_release_attaches_the_rendered_manifests_and_the_changelogs_section(
    workflow: dict[Any, Any], tmp_path: Path
) -> None:
    for name in ("manifests", "crds", "CHANGELOG.md"):
        (tmp_path / name).symlink_to(REPO / name)
    assert run_step(workflow, "Release notes", tmp_path).returncode == 0
    notes = (tmp_path / "dist" / "notes.md").read_text()
    assert "### Added" in notes
    assert "## [" not in notes

    bin_dir = recorder(tmp_path / "bin", "gh")
    done = run_step(workflow, "GitHub release", tmp_path, path=bin_dir)
    assert done.returncode == 0, done.stderr
    assert (bin_dir / "gh.log").read_text().split() == [
        *["release", "create", f"v{VERSION}", "--title", f"v{VERSION}", "--notes-file", "dist/notes.md"],
        *["dist/servicelink.yaml", f"dist/servicelink-{VERSION}.tgz"],
    ]
    rendered = [doc for doc in yaml.safe_load_all((tmp_path / "dist" / "servicelink.yaml").read_text()) if doc]
    (deployment,) = [doc for doc in rendered if doc["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == OPERATOR
    assert {doc["metadata"]["name"] for doc in rendered if doc["kind"] == "CustomResourceDefinition"} == {
        "servicelinks.servicelink.dev",
        "workloadmappings.servicelink.dev",
    }
