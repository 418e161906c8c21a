"""Reads a Dockerfile and replays its COPY and `pip install` steps outside Docker (no engine here)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import venv
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Build-context paths .dockerignore keeps out of the image (mirrored when copying).
IGNORED = shutil.ignore_patterns(
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "target",
    "dbt_packages",
    "logs",
    "*.duckdb",
)
# Commands a RUN step may hold besides `pip install`: users and directories, which a venv does not need.
SKIPPABLE = {"useradd", "groupadd", "mkdir", "chown", "chmod", "rm"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Dockerfile:
    path: Path
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"{self.path} has no {keyword}"
        return found[-1]

    def build_args(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for arg in self.all("ARG"):
            name, _, default = arg.partition("=")
            out[name.strip()] = default.strip()
        return out


def parse(path: Path) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    result = Dockerfile(path)
    for line in logical:
        keyword, _, args = line.partition(" ")
        result.instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
    return result


@dataclass(frozen=True)
class Replayed:
    """A Dockerfile replayed: its venv, the directory standing in for the image's /, and its ENV there."""

    venv: Path
    root: Path
    env: dict[str, str]

    def python(self, code: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.root), **self.env}
        return subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code],
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**env, **(extra_env or {})},
            timeout=600,
        )


def image_env(dockerfile: Dockerfile, root: Path) -> dict[str, str]:
    """The Dockerfile's ENV, absolute paths moved under `root`."""
    out: dict[str, str] = {}
    for line in dockerfile.all("ENV"):
        for pair in shlex.split(line):
            name, _, value = pair.partition("=")
            out[name] = str(root / value.lstrip("/")) if value.startswith("/") else value
    return out


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def pip_steps(dockerfile: Dockerfile) -> list[list[str]]:
    """The `pip install ...` commands of every RUN, as argument lists (after `pip`)."""
    steps: list[list[str]] = []
    for run in dockerfile.all("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"]:
                steps.append(words[1:])
            else:
                assert words[0] in SKIPPABLE, f"{dockerfile.path}: RUN step {command!r} cannot be replayed"
    return steps


def cache_key(dockerfile: Dockerfile) -> str:
    """Changes when anything deciding the installed dependencies changes (not the project's own code)."""
    digest = hashlib.sha256(dockerfile.path.read_bytes())
    for name in ("pyproject.toml", "operator/requirements.txt", "examples/quickstart/plugin/pyproject.toml"):
        digest.update((REPO / name).read_bytes())
    return digest.hexdigest()[:16]


def replay(dockerfile: Dockerfile, cache_dir: Path, log: Path) -> Replayed:
    """Copies the build context as the Dockerfile does, runs its pip steps in a venv; returns the venv.

    The venv is cached by `cache_key` (dependency changes make a new one); the pip steps run every time, so
    the project itself is always reinstalled from the current sources. `--no-cache-dir` is dropped to reuse
    the host's pip cache.
    """
    args = dockerfile.build_args()
    # Named by the Dockerfile's place in the repository, not the checkout's folder: every clone shares it.
    where = dockerfile.path.parent.resolve().relative_to(REPO.resolve()).as_posix().replace("/", "-")
    where = "root" if where == "." else where
    env_dir = cache_dir / f"{where}-{dockerfile.path.name}-{cache_key(dockerfile)}"
    # The copied build context is this run's own (next to its log); only the venv is shared between runs.
    root = log.parent / f"rootfs-{env_dir.name}"
    shutil.rmtree(root, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # One replay at a time per venv: two checkouts on one machine share the cache.
    with open(f"{env_dir}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (env_dir / "bin" / "python").exists():
            stem = env_dir.name.rsplit("-", 1)[0]
            for stale in cache_dir.glob(f"{stem}-*"):  # venvs of older dependency sets
                if not stale.name.endswith(".lock"):
                    shutil.rmtree(stale, ignore_errors=True)
            venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        _run_steps(dockerfile, args, env_dir, root, log)
    return Replayed(env_dir, root, image_env(dockerfile, root))


def _run_steps(dockerfile: Dockerfile, args: dict[str, str], env_dir: Path, root: Path, log: Path) -> None:
    workdir = root
    with log.open("a") as out:
        for instruction in dockerfile.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = root / instruction.args.lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                *sources, dest = _substitute(instruction.args, args).split()
                assert not any(s.startswith("--") for s in sources), "COPY flags are not replayed"
                target = (root / dest.lstrip("/")) if dest.startswith("/") else workdir / dest
                for source in sources:
                    src = REPO / source
                    if src.is_dir():
                        shutil.copytree(src, target, ignore=IGNORED, dirs_exist_ok=True)
                    elif dest.endswith("/"):
                        target.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(src, target / src.name)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(src, target)
            elif instruction.keyword == "RUN":
                for step in pip_steps(Dockerfile(dockerfile.path, [instruction])):
                    command = [str(env_dir / "bin" / "python"), "-m", "pip", *step]
                    command = [word for word in command if word != "--no-cache-dir"]
                    out.write(f"$ (cd {workdir}) {shlex.join(command)}\n")
                    out.flush()
                    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
                    env.pop("VIRTUAL_ENV", None)
                    subprocess.run(
                        command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, check=True, env=env
                    )
