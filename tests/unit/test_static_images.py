"""tests/images/build.py static_image: images of one bed binary (oauth2-proxy, skipper) for the real node."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.images import build


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PHLO_IMAGES_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _read(archive: str) -> tuple[dict, dict, list[str]]:
    """The image's index, config and layer file names."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))  # type: ignore[arg-type]
        layer = tar.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}")
        with tarfile.open(fileobj=layer) as inner:
            names = inner.getnames()
    return index, config, names


def test_the_binary_is_the_entry_point_run_as_nonroot_beside_a_ca_bundle(cache: Path) -> None:
    binary = cache / "oauth2-proxy"
    binary.write_bytes(b"\x7fELF not really")
    built = build.static_image(binary, "quay.io/oauth2-proxy/oauth2-proxy:v7.15.6", "/bin/oauth2-proxy")
    index, config, names = _read(built.archive)
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "quay.io/oauth2-proxy/oauth2-proxy:v7.15.6"
    assert config["config"]["Entrypoint"] == ["/bin/oauth2-proxy"]
    assert config["config"]["User"] == f"{build.STATIC_UID}:{build.STATIC_UID}" and build.STATIC_UID != 0
    assert {"bin/oauth2-proxy", "etc/ssl/certs/ca-certificates.crt", "tmp"} <= set(names)


def test_a_new_binary_is_a_new_image_and_the_same_one_comes_from_the_cache(cache: Path) -> None:
    binary = cache / "skipper"
    binary.write_bytes(b"one")
    first = build.static_image(binary, "example.test/skipper:v1", "/usr/bin/skipper")
    again = build.static_image(binary, "example.test/skipper:v1", "/usr/bin/skipper")
    binary.write_bytes(b"two")
    changed = build.static_image(binary, "example.test/skipper:v1", "/usr/bin/skipper")
    assert again.digest == first.digest and again.archive == first.archive
    assert changed.key != first.key and changed.archive != first.archive


def test_the_versions_come_from_the_bed_build_script() -> None:
    from phlo_operator.model import OAUTH2_PROXY_IMAGE

    assert OAUTH2_PROXY_IMAGE.endswith(":" + build._testbed_version("OAUTH2_PROXY_VERSION"))
    assert build._testbed_version("SKIPPER_VERSION").startswith("v")
    with pytest.raises(RuntimeError, match="pins no NOT_A_VERSION"):
        build._testbed_version("NOT_A_VERSION")
