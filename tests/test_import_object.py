"""`module:attribute` names given on the command line or in settings."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

import paios_reliability as pr
from paios_reliability import ConfigError
from paios_reliability._core.imports import import_instance, import_object


@pytest.fixture
def module_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"mod_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "class Factory:\n    @staticmethod\n    def build():\n        return 42\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))]
    )
    return name


def test_a_module_in_the_current_directory_loads_and_sys_path_is_left_alone(
    module_in_cwd: str,
) -> None:
    before = list(sys.path)
    build = import_object(f"{module_in_cwd}:Factory.build", form="f", what="thing")
    assert build() == 42
    assert sys.path == before


@pytest.mark.parametrize("spec", ["no_colon", ":attr", "module:", ""])
def test_a_malformed_name_is_a_usage_error_naming_the_form(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"--x needs module:attribute, got ") as info:
        import_object(spec, form="--x needs module:attribute", what="thing")
    assert info.value.code == "USAGE_ERROR"
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize(
    "spec", ["surely_not_a_module_here:x", "json:no_such_attribute"]
)
def test_what_cannot_be_imported_is_a_usage_error_naming_it(spec: str) -> None:
    before = list(sys.path)
    with pytest.raises(ConfigError, match=r"cannot load health registry ") as info:
        import_object(spec, form="f", what="health registry")
    assert info.value.code == "USAGE_ERROR"
    assert repr(spec) in str(info.value)
    assert sys.path == before


def test_missing_extra_names_the_module_and_the_extra() -> None:
    from paios_reliability._core.imports import missing_extra

    error = missing_extra("keyring", "keyring")
    assert isinstance(error, pr.PermanentError)
    assert error.code == "DEPENDENCY_MISSING"
    assert str(error).startswith(
        "keyring is not installed: pip install 'paios-reliability[keyring]'"
    )
    assert error.context["module"] == "keyring"
    custom = missing_extra(
        "mcp", "mcp", message="paios_reliability.mcp needs the mcp SDK"
    )
    assert str(custom).startswith(
        "paios_reliability.mcp needs the mcp SDK: pip install 'paios-reliability[mcp]'"
    )


def test_an_instance_is_taken_as_it_is_and_a_factory_is_called(
    module_in_cwd: str,
) -> None:
    assert (
        import_instance(f"{module_in_cwd}:Factory.build", int, form="f", what="n") == 42
    )
    factory = import_instance(f"{module_in_cwd}:Factory", type, form="f", what="cls")
    assert factory.__name__ == "Factory"  # a type is an instance of type: not called


@pytest.mark.parametrize(("cls", "article"), [(int, "an"), (str, "a")])
def test_an_object_of_another_type_is_a_usage_error_naming_the_type(
    cls: type, article: str
) -> None:
    spec = "uuid:NAMESPACE_DNS"  # a UUID, not callable
    with pytest.raises(ConfigError) as info:
        import_instance(spec, cls, form="f", what="thing")
    assert str(info.value).startswith(
        f"{spec!r} is not {article} {cls.__name__} (nor a function returning one)"
    )
    assert info.value.code == "USAGE_ERROR"
