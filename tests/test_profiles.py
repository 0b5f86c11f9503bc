"""Device profiles: bundled ones validate; bad ones fail naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import paths
from harness.errors import ProfileError
from harness.profiles import (
    DeviceProfile,
    SshTransportConfig,
    find_profile,
    list_profiles,
    load_profile_file,
    save_user_profile,
)


def test_every_bundled_profile_validates() -> None:
    files = sorted(paths.bundled_profiles_dir().glob("*.yaml"))
    assert any(f.stem == "local" for f in files)
    for path in files:
        profile = load_profile_file(path)
        assert profile.name == path.stem


def test_local_profile_is_the_embedded_default() -> None:
    profile = find_profile("local")
    assert profile.transport.kind == "local"
    assert profile.bench.min_runs >= 1


def test_unknown_field_is_named_with_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("name: typo\nbench:\n  min_runs: 5\n  warmup_rnus: 3\n")
    with pytest.raises(ProfileError) as info:
        load_profile_file(bad)
    assert str(bad) in info.value.message
    assert "bench.warmup_rnus" in info.value.message


def test_wrong_type_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nruntime:\n  threads: zero\n")
    with pytest.raises(ProfileError, match=r"runtime\.threads"):
        load_profile_file(bad)


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile_file(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ProfileError, match="mapping"):
        load_profile_file(scalar)


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(ProfileError, match="local"):
        find_profile("no-such-device")


def test_user_profile_shadows_and_round_trips() -> None:
    profile = DeviceProfile(
        name="pi-desk", kind="linux",
        transport=SshTransportConfig(kind="ssh", host="10.0.0.5", user="pi"),
    )
    path = save_user_profile(profile)
    assert path.parent == paths.user_profiles_dir()
    loaded = find_profile("pi-desk")
    assert loaded == profile
    assert "pi-desk" in {p.name for p in list_profiles()}
