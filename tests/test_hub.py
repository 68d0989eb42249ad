"""The Meltano Hub definition and meltano.yml: valid, complete, and in step with the tap.

The Hub's own JSON Schemas are vendored in meltano-hub/schemas (source and commit in its
README), so the tests need nothing outside the repository; they are never skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
import xml.etree.ElementTree as ET
from functools import cache
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import referencing
import referencing.jsonschema
import yaml

PROJECT = Path(__file__).resolve().parents[1]
HUB_DIR = PROJECT / "meltano-hub"
HUB_SCHEMAS = HUB_DIR / "schemas"
HUB_FILE = HUB_DIR / "extractors" / "tap-optico" / "tap-optico.yml"
MELTANO_YML = PROJECT / "meltano.yml"

# JSON Schema type (or format) of a tap setting -> the Meltano setting kind it needs.
KINDS = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
}
SETTING_KEYS = ("label", "description", "kind")


def load_yaml(path: Path) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", yaml.safe_load(path.read_text(encoding="utf-8")))


@cache
def about() -> dict[str, t.Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tap_optico", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT,
    )
    return t.cast("dict[str, t.Any]", json.loads(result.stdout))


def hub() -> dict[str, t.Any]:
    return load_yaml(HUB_FILE)


def meltano_tap() -> dict[str, t.Any]:
    (tap,) = [
        p for p in load_yaml(MELTANO_YML)["plugins"]["extractors"] if p["name"] == "tap-optico"
    ]
    return t.cast("dict[str, t.Any]", tap)


def meltano_loader(name: str) -> dict[str, t.Any]:
    (loader,) = [p for p in load_yaml(MELTANO_YML)["plugins"]["loaders"] if p["name"] == name]
    return t.cast("dict[str, t.Any]", loader)


def expected_settings() -> dict[str, dict[str, t.Any]]:
    """The tap's own settings as Meltano must declare them: kind, value, sensitive."""
    out: dict[str, dict[str, t.Any]] = {}
    for name, prop in about()["settings"]["properties"].items():
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else types
        (json_type,) = [x for x in types if x != "null"]
        kind = "date_iso8601" if prop.get("format") in ("date", "date-time") else KINDS[json_type]
        setting: dict[str, t.Any] = {"kind": kind, "sensitive": bool(prop.get("secret"))}
        if "default" in prop:
            setting["value"] = prop["default"]
        out[name] = setting
    return out


def declared(settings: list[dict[str, t.Any]]) -> dict[str, dict[str, t.Any]]:
    out: dict[str, dict[str, t.Any]] = {}
    for s in settings:
        assert s["name"] not in out, f"setting {s['name']} declared twice"
        entry = {"kind": s.get("kind"), "sensitive": bool(s.get("sensitive"))}
        if "value" in s:
            entry["value"] = s["value"]
        out[s["name"]] = entry
    return out


@cache
def hub_registry() -> referencing.Registry[t.Any]:
    """Every Hub schema, found by file name: the files' own `$id`s are not consistent paths."""
    if not HUB_SCHEMAS.is_dir():
        pytest.fail(f"the Meltano Hub schemas are missing: {HUB_SCHEMAS}")
    files = {p.name: p for p in HUB_SCHEMAS.rglob("*.schema.json")}

    def retrieve(uri: str) -> referencing.Resource[t.Any]:
        name = Path(urlsplit(uri).path).name
        if name not in files:
            raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]
        contents = json.loads(files[name].read_text(encoding="utf-8"))
        return referencing.Resource.from_contents(
            contents, default_specification=referencing.jsonschema.DRAFT7
        )

    return referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]


def test_hub_schemas_are_there():
    schema = HUB_SCHEMAS / "plugin_definitions" / "extractors.schema.json"
    assert schema.is_file(), f"the vendored Meltano Hub schemas are missing: {schema}"


def test_hub_definition_is_valid_against_the_hub_schemas():
    path = HUB_SCHEMAS / "plugin_definitions" / "extractors.schema.json"
    if not path.is_file():
        pytest.fail(f"the Meltano Hub extractor schema is missing: {path}")
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["$id"] = path.as_uri()  # resolve `../common/...` relative to this file
    validator = jsonschema.Draft7Validator(
        schema, registry=hub_registry(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(hub()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_hub_validation_catches_a_broken_definition():
    """The schemas are really applied: unknown keys and bad kinds are rejected."""
    path = HUB_SCHEMAS / "plugin_definitions" / "extractors.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["$id"] = path.as_uri()
    validator = jsonschema.Draft7Validator(schema, registry=hub_registry())
    broken = hub()
    broken["settings"] = [*broken["settings"], {"name": "x", "kind": "text"}]
    broken["unknown_key"] = 1
    del broken["quality"]
    messages = " ".join(e.message for e in validator.iter_errors(broken))
    assert "'text' is not one of" in messages
    assert "unknown_key" in messages
    assert "'quality' is a required property" in messages


def test_hub_definition_metadata():
    definition = hub()
    assert definition["name"] == "tap-optico"
    assert definition["variant"] == "tap-optico"
    assert definition["namespace"] == "tap_optico"
    assert definition["pip_url"] == "tap-optico"
    assert definition["executable"] == "tap-optico"
    assert definition["repo"] == "https://github.com/tap-optico/tap-optico"
    assert "meltano_sdk" in definition["keywords"], "shows 'Built with the Meltano SDK'"
    assert definition["quality"]
    assert definition["maintenance_status"]
    assert definition["domain_url"].startswith("https://")
    assert definition["supported_python_versions"] == about()["supported_python_versions"]


def test_hub_logo_is_a_small_svg_in_the_repository():
    logo_url = hub()["logo_url"]
    assert logo_url.startswith("/assets/logos/extractors/")
    assert logo_url.endswith(".svg")
    logo = HUB_DIR / logo_url.lstrip("/")
    assert logo.is_file(), f"{logo} (the Hub serves static/{logo_url.lstrip('/')})"
    assert logo.stat().st_size < 10_000
    assert ET.parse(logo).getroot().tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("source", ["hub", "meltano.yml"])
def test_every_setting_has_label_description_kind(source):
    settings = hub()["settings"] if source == "hub" else meltano_tap()["settings"]
    for setting in settings:
        missing = [key for key in SETTING_KEYS if not setting.get(key)]
        assert not missing, f"{source}: {setting['name']} lacks {missing}"
    by_name = {s["name"]: s for s in settings}
    assert by_name["api_key"].get("sensitive") is True
    assert by_name["api_key"]["kind"] != "password", "deprecated: use sensitive: true"


@pytest.mark.parametrize("source", ["hub", "meltano.yml"])
def test_settings_agree_with_the_tap(source):
    """Names, kinds, defaults and sensitivity, as `tap-optico --about` reports them."""
    settings = hub()["settings"] if source == "hub" else meltano_tap()["settings"]
    assert declared(settings) == expected_settings()


@pytest.mark.parametrize("source", ["hub", "meltano.yml"])
def test_capabilities_and_required_settings_agree_with_the_tap(source):
    plugin = hub() if source == "hub" else meltano_tap()
    assert sorted(plugin["capabilities"]) == sorted(about()["capabilities"])
    assert "state" in plugin["capabilities"], "without it Meltano never passes state back"
    required = about()["settings"]["required"]
    groups = [sorted(group) for group in plugin["settings_group_validation"]]
    # One account by `api_key`, or several by `accounts`: the tap needs exactly one of them.
    assert groups == [sorted([*required, "api_key"]), sorted([*required, "accounts"])]


def test_meltano_yml_and_hub_agree():
    tap, definition = meltano_tap(), hub()
    for key in ("namespace", "executable", "label", "settings_group_validation"):
        assert tap[key] == definition[key], key
    assert [s["name"] for s in tap["settings"]] == [s["name"] for s in definition["settings"]]
    for ours, theirs in zip(tap["settings"], definition["settings"], strict=True):
        assert ours == theirs, ours["name"]
    assert tap["pip_url"] == "-e ."


def test_meltano_yml_is_valid_for_meltano():
    schema_file = resources.files("meltano") / "schemas" / "meltano.schema.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = list(validator.iter_errors(load_yaml(MELTANO_YML)))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_meltano_yml_needs_no_hub_and_sends_nothing():
    project = load_yaml(MELTANO_YML)
    assert "version" not in project
    assert project["send_anonymous_usage_stats"] is False
    assert project["project_id"]
    for kind in ("extractors", "loaders"):
        for plugin in project["plugins"][kind]:
            # Inline definitions: namespace + pip_url, nothing inherited from the Hub.
            assert plugin.get("namespace"), plugin["name"]
            assert plugin.get("pip_url"), plugin["name"]
            assert "variant" not in plugin, plugin["name"]
            assert "inherit_from" not in plugin, plugin["name"]


def test_loaders_are_pinned_and_declare_their_connection_settings():
    for loader in load_yaml(MELTANO_YML)["plugins"]["loaders"]:
        main = loader["pip_url"].split()[0]
        assert "==" in main, f"{loader['name']} is not pinned: {loader['pip_url']}"
    duckdb = meltano_loader("target-duckdb")
    assert "duckdb==1.2.2" in duckdb["pip_url"].split(), "target-duckdb 0.8.0 + duckdb>=1.3"
    postgres = meltano_loader("target-postgres")
    assert postgres["pip_url"].startswith("meltanolabs-target-postgres==")
    settings = {s["name"]: s for s in postgres["settings"]}
    for name in (
        "host",
        "port",
        "user",
        "password",
        "database",
        "default_target_schema",
        "sqlalchemy_url",
    ):
        assert name in settings, f"TARGET_POSTGRES_{name.upper()} would not reach the loader"
    assert settings["password"].get("sensitive") is True
    assert settings["sqlalchemy_url"].get("sensitive") is True
    assert postgres["env"]["PGTZ"] == "UTC", "timestamps stored in UTC whatever the server zone"
