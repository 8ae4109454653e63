"""``--data`` specs and the default data root."""

from __future__ import annotations

from pathlib import Path

import pytest

from snipit_cli.data.specs import DataSpec, default_data_root, parse_data_spec
from snipit_cli.errors import UsageError


@pytest.mark.parametrize("text", ["synthetic", "cifar10", "cifar100", "mnist", "fashionmnist"])
def test_named_kinds(text: str) -> None:
    spec = parse_data_spec(text)

    assert spec == DataSpec(text)
    assert spec.path is None
    assert str(spec) == text


@pytest.mark.parametrize(("text", "kind"), [("CIFAR10", "cifar10"), ("FashionMNIST", "fashionmnist")])
def test_named_kinds_ignore_case(text: str, kind: str) -> None:
    assert parse_data_spec(text) == DataSpec(kind)


def test_imagefolder_prefix_keeps_the_path_as_written(tmp_path: Path) -> None:
    target = tmp_path / "My Images:v2"  # need not exist yet; case and colons are kept

    spec = parse_data_spec(f"ImageFolder:{target}")

    assert spec == DataSpec("imagefolder", target)
    assert str(spec) == f"imagefolder:{target}"


def test_imagefolder_prefix_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    assert parse_data_spec("imagefolder:~/pics").path == tmp_path / "pics"


def test_bare_existing_directory_is_an_image_folder(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()

    assert parse_data_spec(str(tmp_path / "pics")) == DataSpec("imagefolder", tmp_path / "pics")
    # The shared conftest runs each test inside tmp_path: relative folders work too.
    assert parse_data_spec("pics") == DataSpec("imagefolder", Path("pics"))


def test_named_kind_wins_over_a_folder_of_that_name(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()  # cwd is tmp_path

    assert parse_data_spec("mnist") == DataSpec("mnist")


@pytest.mark.parametrize("text", ["svhn", "no/such/folder", "imagenet1k"])
def test_unknown_spec_is_a_usage_error_listing_the_choices(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_data_spec(text)

    message = str(info.value)
    assert repr(text) in message
    assert "synthetic" in message and "imagefolder:PATH" in message and "cifar100" in message


def test_bare_existing_file_is_not_an_image_folder(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")

    with pytest.raises(UsageError):
        parse_data_spec(str(tmp_path / "data.csv"))


def test_default_data_root_honours_snipit_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNIPIT_DATA", str(tmp_path / "somewhere"))

    assert default_data_root() == tmp_path / "somewhere"


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_default_data_root_falls_back_to_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("SNIPIT_DATA", raising=False)
    else:
        monkeypatch.setenv("SNIPIT_DATA", value)

    assert default_data_root() == tmp_path / ".cache" / "snipit" / "data"
