"""Unit tests for configuration loading (controller.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import (
    AsteriskConfig,
    Config,
    Route,
    load_config,
)
from controller.errors import ConfigError

NO_ENV: dict[str, str] = {}


def write_toml(folder: Path, text: str, name: str = "callconnect.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None = None, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=NO_ENV if environ is None else environ)
    assert info.value.error_id == "invalid-config"
    assert info.value.as_dict()["error_id"] == "invalid-config"
    return info.value


# ---------------------------------------------------------------- defaults


def test_defaults() -> None:
    config = load_config(environ=NO_ENV)
    assert config == Config()
    assert config.backend == "asterisk"
    assert config.asterisk.host == "127.0.0.1"
    assert config.asterisk.port == 5038
    assert config.asterisk.username == "callconnect"
    assert config.asterisk.secret == ""
    assert config.asterisk.trunk_endpoint == "trunk"
    assert config.asterisk.uri_endpoint == "callconnect-uri"
    assert config.asterisk.routes == []
    assert config.calls.default_region == "ZA"
    assert config.calls.ring_timeout == 30
    assert config.calls.time_limit == 3600
    assert config.calls.record is True
    assert config.media.whisper_dir == "/var/lib/callconnect/whispers"
    assert config.media.recording_dir == "/var/spool/callconnect/recordings"
    assert config.whisper.rate == 160
    assert config.webhook.url == ""
    assert config.webhook.attempts == 3


def test_defaults_are_not_shared_between_configs() -> None:
    first = load_config(environ=NO_ENV)
    first.asterisk.routes.append(Route("+27", "x"))
    assert load_config(environ=NO_ENV).asterisk.routes == []


# ---------------------------------------------------------------- file


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
[asterisk]
host = "10.0.0.5"
port = 5039
secret = "from-file"
connect_timeout = 3

[calls]
ring_timeout = 45
record = false
caller_id = "+27110000000"

[webhook]
url = "https://example.com/hook"
""",
    )
    config = load_config(path, environ=NO_ENV)
    assert config.asterisk.host == "10.0.0.5"
    assert config.asterisk.port == 5039
    assert config.asterisk.secret == "from-file"
    assert config.asterisk.connect_timeout == 3.0
    assert isinstance(config.asterisk.connect_timeout, float)
    assert config.calls.ring_timeout == 45
    assert config.calls.record is False
    assert config.calls.caller_id == "+27110000000"
    assert config.webhook.url == "https://example.com/hook"
    # untouched settings keep their defaults
    assert config.asterisk.username == "callconnect"
    assert config.calls.time_limit == 3600


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "")
    config = load_config(path, environ=NO_ENV)
    assert config.model_dump() == Config().model_dump()
    assert config.file == path


def test_path_may_be_a_string(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[asterisk]\nhost = "pbx"\n')
    assert load_config(str(path), environ=NO_ENV).asterisk.host == "pbx"


def test_relative_dirs_resolve_against_the_file_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = write_toml(
        folder,
        """
[media]
whisper_dir = "whispers"
recording_dir = "../spool/rec"
""",
    )
    config = load_config(path, environ=NO_ENV)
    assert config.media.whisper_dir == str((folder / "whispers").resolve())
    assert config.media.recording_dir == str((tmp_path / "spool" / "rec").resolve())


def test_relative_dirs_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    write_toml(folder, '[media]\nwhisper_dir = "whispers"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/callconnect.toml"), environ=NO_ENV)
    assert config.media.whisper_dir == str((folder / "whispers").resolve())


def test_absolute_and_empty_dirs_are_kept(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[media]\nwhisper_dir = "/srv/w"\nwhisper_switch_dir = ""\n')
    config = load_config(path, environ=NO_ENV)
    assert config.media.whisper_dir == "/srv/w"
    assert config.media.whisper_switch_dir == ""


def test_routes_parse(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
[[asterisk.routes]]
prefix = "+2711"
endpoint = "jhb-trunk"

[[asterisk.routes]]
prefix = "+44"
endpoint = "uk-trunk"
""",
    )
    config = load_config(path, environ=NO_ENV)
    assert config.asterisk.routes == [Route("+2711", "jhb-trunk"), Route("+44", "uk-trunk")]


def test_inline_routes_parse(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[asterisk]\nroutes = [{prefix = "+27", endpoint = "za"}]\n')
    assert load_config(path, environ=NO_ENV).asterisk.routes == [Route("+27", "za")]


@pytest.mark.parametrize(
    "routes",
    [
        '[{prefix = "+27"}]',
        '[{prefix = "+27", endpoint = "za", weight = 1}]',
        '["+27"]',
    ],
)
def test_bad_routes_are_refused(tmp_path: Path, routes: str) -> None:
    path = write_toml(tmp_path, f"[asterisk]\nroutes = {routes}\n")
    error = config_error(path)
    assert error.details == {"setting": "asterisk.routes", "source": str(path)}
    assert "prefix and endpoint" in error.message


# ---------------------------------------------------------------- environment


def test_env_overrides_defaults() -> None:
    config = load_config(
        environ={
            "CALLCONNECT_ASTERISK_SECRET": "from-env",
            "CALLCONNECT_ASTERISK_PORT": "6000",
            "CALLCONNECT_ASTERISK_ACTION_TIMEOUT": "2.5",
            "CALLCONNECT_CALLS_RECORD": "no",
            "CALLCONNECT_CALLS_DEFAULT_REGION": "GB",
        }
    )
    assert config.asterisk.secret == "from-env"
    assert config.asterisk.port == 6000
    assert config.asterisk.action_timeout == 2.5
    assert config.calls.record is False
    assert config.calls.default_region == "GB"


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[asterisk]\nsecret = "from-file"\nhost = "file-host"\n[calls]\nring_timeout = 45\n',
    )
    config = load_config(
        path,
        environ={"CALLCONNECT_ASTERISK_SECRET": "from-env", "CALLCONNECT_CALLS_RING_TIMEOUT": "20"},
    )
    assert config.asterisk.secret == "from-env"
    assert config.calls.ring_timeout == 20
    assert config.asterisk.host == "file-host"


def test_env_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCONNECT_ASTERISK_USERNAME", "ops")
    assert load_config().asterisk.username == "ops"


def test_unrelated_env_is_ignored() -> None:
    config = load_config(environ={"CALLCONNECT_NOPE": "x", "ASTERISK_HOST": "elsewhere"})
    assert config == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert load_config(environ={"CALLCONNECT_CALLS_RECORD": text}).calls.record is expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CALLCONNECT_CALLS_RING_TIMEOUT", "thirty"),
        ("CALLCONNECT_CALLS_RECORD", "maybe"),
        ("CALLCONNECT_ASTERISK_CONNECT_TIMEOUT", "soon"),
    ],
)
def test_bad_env_values_are_refused(name: str, value: str) -> None:
    error = config_error(environ={name: value})
    setting = name.removeprefix("CALLCONNECT_").lower().replace("_", ".", 1)
    assert error.details == {"setting": setting, "source": name}
    assert error.message.startswith(f'{setting} = "{value}" from {name}: must be ')


def test_env_can_break_the_ring_timeout_check() -> None:
    error = config_error(environ={"CALLCONNECT_CALLS_RING_TIMEOUT": "0"})
    assert error.details == {"setting": "calls.ring_timeout",
                             "source": "CALLCONNECT_CALLS_RING_TIMEOUT"}
    assert error.message == ("calls.ring_timeout = 0 from CALLCONNECT_CALLS_RING_TIMEOUT: "
                             "must be at least 1")


# ---------------------------------------------------------------- refusals


def test_unknown_setting(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[asterisk]\nhots = "x"\n')
    error = config_error(path)
    assert error.details == {"setting": "asterisk.hots", "source": str(path)}
    assert error.message == f"asterisk.hots in {path}: unknown setting (did you mean asterisk.host?)"


def test_an_unknown_keys_value_is_not_shown(tmp_path: Path) -> None:
    """It may be a misspelt secret."""
    path = write_toml(tmp_path, '[asterisk]\nsecert = "hunter2"\n')
    error = config_error(path)
    assert error.message == (f"asterisk.secert in {path}: unknown setting "
                             "(did you mean asterisk.secret?)")


def test_unknown_section(tmp_path: Path) -> None:
    error = config_error(write_toml(tmp_path, "[kamailio]\nport = 5060\n"))
    assert error.details["setting"] == "kamailio"
    assert "unknown setting" in error.message


def test_section_must_be_a_table(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "asterisk = 5\n")
    error = config_error(path)
    assert error.details == {"setting": "asterisk", "source": str(path)}
    assert error.message == f"asterisk = 5 in {path}: must be a table"


@pytest.mark.parametrize(
    ("toml", "setting"),
    [
        ('[calls]\nring_timeout = "thirty"\n', "calls.ring_timeout"),
        ("[asterisk]\nport = true\n", "asterisk.port"),
        ('[calls]\nrecord = "maybe"\n', "calls.record"),
        ("[asterisk]\nhost = [1, 2]\n", "asterisk.host"),
        ('[asterisk]\nconnect_timeout = "soon"\n', "asterisk.connect_timeout"),
        ("[asterisk.host]\nx = 1\n", "asterisk.host"),
    ],
)
def test_wrong_type(tmp_path: Path, toml: str, setting: str) -> None:
    path = write_toml(tmp_path, toml)
    error = config_error(path)
    assert error.details == {"setting": setting, "source": str(path)}
    assert f" in {path}: must be " in error.message


def test_float_for_int_setting_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[calls]\nring_timeout = 30.5\n")
    with pytest.raises(ConfigError):
        load_config(path, environ=NO_ENV)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    error = config_error(missing)
    assert error.details == {"path": str(missing)}
    assert "does not exist" in error.message


def test_config_path_that_is_a_folder(tmp_path: Path) -> None:
    config_error(tmp_path)


def test_bad_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[asterisk\nhost = \n")
    error = config_error(path)
    assert error.details == {"path": str(path)}
    assert "is not valid TOML" in error.message


@pytest.mark.parametrize(("ring_timeout", "bound"),
                         [(0, "at least 1"), (-1, "at least 1"), (601, "at most 600"),
                          (3600, "at most 600")])
def test_ring_timeout_out_of_range(tmp_path: Path, ring_timeout: int, bound: str) -> None:
    path = write_toml(tmp_path, f"[calls]\nring_timeout = {ring_timeout}\n")
    error = config_error(path)
    assert error.details == {"setting": "calls.ring_timeout", "source": str(path)}
    assert error.message == f"calls.ring_timeout = {ring_timeout} in {path}: must be {bound}"


@pytest.mark.parametrize("ring_timeout", [1, 600])
def test_ring_timeout_bounds_accepted(tmp_path: Path, ring_timeout: int) -> None:
    path = write_toml(tmp_path, f"[calls]\nring_timeout = {ring_timeout}\n")
    assert load_config(path, environ=NO_ENV).calls.ring_timeout == ring_timeout


@pytest.mark.parametrize(("concurrency", "bound"), [(0, "at least 1"), (251, "at most 250")])
def test_webhook_concurrency_out_of_range(tmp_path: Path, concurrency: int, bound: str) -> None:
    path = write_toml(tmp_path, f"[webhook]\nconcurrency = {concurrency}\n")
    error = config_error(path)
    assert error.message == f"webhook.concurrency = {concurrency} in {path}: must be {bound}"


def test_time_limit_must_be_positive(tmp_path: Path) -> None:
    error = config_error(write_toml(tmp_path, "[calls]\ntime_limit = 0\n"))
    assert error.details["setting"] == "calls.time_limit"


def test_backend_must_be_a_known_one(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'backend = "yate"\n')
    error = config_error(path)
    assert error.details == {"setting": "backend", "source": str(path)}
    assert error.message == f"backend = \"yate\" in {path}: must be one of 'asterisk' or 'freeswitch'"
    error = config_error(environ={"CALLCONNECT_BACKEND": "yate"})
    assert error.details == {"setting": "backend", "source": "CALLCONNECT_BACKEND"}


def test_freeswitch_is_a_backend(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, 'backend = "freeswitch"\n[freeswitch]\nport = 8022\n'))
    assert (config.backend, config.freeswitch.port) == ("freeswitch", 8022)


# ---------------------------------------------------------------- secrets


def test_repr_never_shows_the_secret(tmp_path: Path) -> None:
    secret = "hunter2-s3cr3t"
    assert secret not in repr(AsteriskConfig(secret=secret))
    assert "secret" not in repr(AsteriskConfig(secret=secret))

    path = write_toml(tmp_path, f'[asterisk]\nsecret = "{secret}"\n')
    config = load_config(path, environ=NO_ENV)
    assert config.asterisk.secret == secret
    assert secret not in repr(config.asterisk)
    assert secret not in repr(config)
    assert secret not in str(config)

    from_env = load_config(environ={"CALLCONNECT_ASTERISK_SECRET": secret})
    assert secret not in repr(from_env)


# ---------------------------------------------------------------- switch paths


def test_switch_paths_default_to_host_paths() -> None:
    config = load_config(environ=NO_ENV)
    host = Path("/var/lib/callconnect/whispers/c1.wav")
    assert config.whisper_path_on_switch(host) == str(host)


def test_switch_paths_map_into_the_switch_folder() -> None:
    config = load_config(
        environ={
            "CALLCONNECT_MEDIA_RECORDING_SWITCH_DIR": "/asterisk/rec",
            "CALLCONNECT_MEDIA_WHISPER_SWITCH_DIR": "/asterisk/w",
        }
    )
    recording = Path("/var/spool/callconnect/recordings/2025/c1.wav")
    assert config.recording_path_on_switch(recording) == "/asterisk/rec/2025/c1.wav"
    whisper = Path("/var/lib/callconnect/whispers/c1.wav")
    assert config.whisper_path_on_switch(whisper) == "/asterisk/w/c1.wav"


@pytest.mark.parametrize("name", ["Sales", '"sales.eu"', '"\uff53ales"', '".."', '"s\u0430les"'])
def test_a_group_name_outside_a_to_z_digits_underscore_dash_is_a_config_error(
        tmp_path: Path, name: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[groups.{name}]\nagents = ["+27115550101"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "is not a group name" in caught.value.message
    assert caught.value.details["setting"].startswith("groups.")


@pytest.mark.parametrize("name", ["concurrency", "per_host_concurrency"])
def test_webhook_concurrency_must_be_at_least_one(tmp_path: Path, name: str) -> None:
    assert (Config().webhook.concurrency, Config().webhook.per_host_concurrency) == (16, 4)
    error = config_error(write_toml(tmp_path, f"[webhook]\n{name} = 0\n"))
    assert error.details["setting"] == f"webhook.{name}"
