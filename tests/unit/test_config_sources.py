"""Where settings come from besides the TOML file: secrets from files
(CALLCONNECT_*_FILE) and systemd credentials, settings the environment cannot
set, unknown CALLCONNECT_* variables, and the bounds every value is held to."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.config import Config, load_config
from controller.errors import ConfigError
from controller.settings import OTHER_VARIABLES, Layers, env_name, is_secret

REPO = Path(__file__).resolve().parents[2]
SECRETS = {("asterisk", "secret"): "hunter2", ("freeswitch", "password"): "ClueCon-2",
           ("webhook", "signing_secret"): "whsec_" + "A" * 32, ("api", "tokens"): ["t1", "t2"]}


def value_of(config: Config, where: tuple[str, ...]) -> Any:
    return getattr(getattr(config, where[0]), where[1])


def refused(environ: dict[str, str], path: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    return caught.value


def test_the_secret_settings_are_the_ones_hidden_from_repr() -> None:
    """The secrets are the fields declared repr=False: those alone may come
    from files and credentials, and never show in errors or logs."""
    secret = {where for where, field in Layers(Config).settings.items() if is_secret(field)}
    assert secret == set(SECRETS)


# ---------------------------------------------------------------- *_FILE


@pytest.mark.parametrize("where", list(SECRETS))
def test_a_secret_comes_from_the_file_its_FILE_variable_names(
        tmp_path: Path, where: tuple[str, str]) -> None:
    expected = SECRETS[where]
    text = "\n".join(expected) if isinstance(expected, list) else expected
    secret_file = tmp_path / "secret"
    secret_file.write_text(text + "\n")
    config = load_config(environ={env_name(where) + "_FILE": str(secret_file)})
    assert value_of(config, where) == expected


def test_only_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"pa ss\n\n")
    config = load_config(environ={"CALLCONNECT_ASTERISK_SECRET_FILE": str(secret_file)})
    assert config.asterisk.secret == "pa ss\n"


def test_tokens_in_a_file_may_be_one_a_line_or_comma_separated(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alpha\nbeta, gamma\n\n")
    config = load_config(environ={"CALLCONNECT_API_TOKENS_FILE": str(tokens)})
    assert config.api.tokens == ["alpha", "beta", "gamma"]


def test_a_missing_secret_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    error = refused({"CALLCONNECT_ASTERISK_SECRET_FILE": str(missing)})
    assert error.details == {"setting": "asterisk.secret",
                             "source": "CALLCONNECT_ASTERISK_SECRET_FILE"}
    assert error.message == (f"asterisk.secret from CALLCONNECT_ASTERISK_SECRET_FILE: "
                             f"the file {missing} does not exist")


def test_an_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    error = refused({"CALLCONNECT_WEBHOOK_SIGNING_SECRET_FILE": str(tmp_path)})
    assert error.message == (f"webhook.signing_secret from CALLCONNECT_WEBHOOK_SIGNING_SECRET_FILE: "
                             f"the file {tmp_path} cannot be read: Is a directory")


def test_an_oversized_secret_file_is_a_config_error(tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * 70000)
    assert "is over 65536 bytes" in refused({"CALLCONNECT_ASTERISK_SECRET_FILE": str(huge)}).message


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file")
    error = refused({"CALLCONNECT_ASTERISK_SECRET": "from-env",
                     "CALLCONNECT_ASTERISK_SECRET_FILE": str(secret_file)})
    assert "set CALLCONNECT_ASTERISK_SECRET or CALLCONNECT_ASTERISK_SECRET_FILE, not both" \
        in error.message


def test_FILE_is_only_for_secrets(tmp_path: Path) -> None:
    host_file = tmp_path / "host"
    host_file.write_text("pbx")
    with capture_logs() as logs:
        config = load_config(environ={"CALLCONNECT_ASTERISK_HOST_FILE": str(host_file)})
    assert config.asterisk.host == "127.0.0.1"
    assert [log["variable"] for log in logs] == ["CALLCONNECT_ASTERISK_HOST_FILE"]


# ---------------------------------------------------------------- systemd credentials


def credentials(folder: Path, **files: str) -> dict[str, str]:
    folder.mkdir()
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)
    return {"CREDENTIALS_DIRECTORY": str(folder)}


def test_secrets_come_from_systemd_credentials(tmp_path: Path) -> None:
    environ = credentials(tmp_path / "creds", asterisk__secret="ami-secret\n",
                          freeswitch__password="esl", webhook__signing_secret="whsec_x\n",
                          api__tokens="t1\nt2\n")
    config = load_config(environ=environ)
    assert (config.asterisk.secret, config.freeswitch.password, config.webhook.signing_secret,
            config.api.tokens) == ("ami-secret", "esl", "whsec_x", ["t1", "t2"])


def test_credentials_win_over_the_file_and_lose_to_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[asterisk]\nsecret = "from-toml"\n[freeswitch]\npassword = "from-toml"\n')
    environ = credentials(tmp_path / "creds", asterisk__secret="from-credential",
                          freeswitch__password="from-credential")
    environ["CALLCONNECT_FREESWITCH_PASSWORD"] = "from-env"
    config = load_config(path, environ=environ)
    assert config.asterisk.secret == "from-credential"
    assert config.freeswitch.password == "from-env"


def test_credentials_are_read_for_secrets_only(tmp_path: Path) -> None:
    environ = credentials(tmp_path / "creds", asterisk__host="elsewhere")
    assert load_config(environ=environ).asterisk.host == "127.0.0.1"


def test_an_unreadable_credential_is_a_config_error(tmp_path: Path) -> None:
    environ = credentials(tmp_path / "creds")
    (tmp_path / "creds" / "api.tokens").mkdir()
    error = refused(environ)
    assert error.details["setting"] == "api.tokens"
    assert "cannot be read: Is a directory" in error.message


# ---------------------------------------------------------------- environment


@pytest.mark.parametrize(("name", "setting"), [("CALLCONNECT_ASTERISK_ROUTES", "asterisk.routes"),
                                               ("CALLCONNECT_GROUPS", "groups")])
def test_tables_cannot_come_from_the_environment(name: str, setting: str) -> None:
    error = refused({name: "+27=trunk"})
    assert error.message == (f"{setting} from {name}: cannot be set from the environment; "
                             "set it in the config file")


def test_an_unknown_variable_is_logged_with_the_nearest_known_name() -> None:
    with capture_logs() as logs:
        config = load_config(environ={"CALLCONNECT_AMI_SECRET": "s3cret",
                                      "CALLCONNECT_ASTERISK_SECERT": "s3cret"})
    assert config.asterisk.secret == ""
    assert logs == [
        {"event": "config.unknown_environment_variable", "log_level": "warning",
         "variable": "CALLCONNECT_AMI_SECRET", "did_you_mean": "CALLCONNECT_ASTERISK_SECRET",
         "hint": "not a setting, so it is ignored"},
        {"event": "config.unknown_environment_variable", "log_level": "warning",
         "variable": "CALLCONNECT_ASTERISK_SECERT", "did_you_mean": "CALLCONNECT_ASTERISK_SECRET",
         "hint": "not a setting, so it is ignored"},
    ]
    assert "s3cret" not in repr(logs)


def test_known_variables_are_not_warned_about(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("x")
    environ = dict.fromkeys(OTHER_VARIABLES, "x")
    environ |= {"CALLCONNECT_API_PORT": "8081", "CALLCONNECT_BACKEND": "asterisk",
                "CALLCONNECT_ASTERISK_SECRET_FILE": str(secret_file), "PATH": "/bin"}
    with capture_logs() as logs:
        load_config(environ=environ)
    assert logs == []


# Names the repository mentions that are neither settings nor read by anything.
NOT_VARIABLES = {
    "CALLCONNECT_SECTION_KEY",  # the pattern, in docs and comments
    "CALLCONNECT_SECTION_KEY_FILE",
    "CALLCONNECT_NOPE",  # tests/unit/test_config.py: an unrelated variable
}


# Their unknown names are on purpose.
TESTS_OF_UNKNOWN_NAMES = {"test_config_sources.py", "test_config_cli.py"}


def test_every_CALLCONNECT_name_in_the_repository_is_known() -> None:
    """A name in the docs, the lab, the unit files or the tests that the config
    would warn about is a typo there (as CALLCONNECT_AMI_SECRET once was)."""
    layers = Layers(Config)
    known = {env_name(where) for where in layers.settings}
    known |= {env_name(where) + "_FILE" for where, f in layers.settings.items() if is_secret(f)}
    known |= set(OTHER_VARIABLES) | NOT_VARIABLES
    places = [REPO / "README.md", REPO / "Makefile", REPO / "callconnect.example.toml"]
    for folder in ("docs", "dialplans", "packaging", "sip-lab", "tests", "bench", "controller"):
        places += [p for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix != ".json"
                   and p.name not in TESTS_OF_UNKNOWN_NAMES]
    unknown: set[str] = set()
    for place in places:
        try:
            text = place.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        unknown |= {f"{name} ({place.relative_to(REPO)})"
                    for name in re.findall(r"\bCALLCONNECT_[A-Z0-9_]*[A-Z0-9]\b", text)
                    if name not in known}
    assert sorted(unknown) == []


# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize(("toml", "message"), [
    ("[asterisk]\nport = 70000", "asterisk.port = 70000 in {}: must be at most 65535"),
    ("[api]\nport = 0", "api.port = 0 in {}: must be at least 1"),
    ("[freeswitch]\nport = -1", "freeswitch.port = -1 in {}: must be at least 1"),
    ("[asterisk]\nconnect_timeout = -1.5", "asterisk.connect_timeout = -1.5 in {}: must be more than 0"),
    ("[asterisk]\nping_interval = 0", "asterisk.ping_interval = 0 in {}: must be more than 0"),
    ("[webhook]\ntimeout = nan", "webhook.timeout = NaN in {}: must be a finite number"),
    ("[routing]\ndial_whom_timeout = inf", "routing.dial_whom_timeout = Infinity in {}: "
                                           "must be a finite number"),
    ("[api]\nmax_active_calls = -1", "api.max_active_calls = -1 in {}: must be at least 0"),
    ("[limits]\ntrunk_calls_per_second = -0.5",
     "limits.trunk_calls_per_second = -0.5 in {}: must be at least 0"),
    ("[webhook]\nattempts = 0", "webhook.attempts = 0 in {}: must be at least 1"),
    ("[whisper]\nrate = 20", "whisper.rate = 20 in {}: must be at least 80"),
    ("[calls]\ntime_limit = 90000", "calls.time_limit = 90000 in {}: must be at most 86400"),
    ('[calls]\ndefault_region = "XX"', 'calls.default_region = "XX" in {}: not a region phonenumbers '
                                       'knows: use a two-letter ISO 3166 code such as "ZA", "GB" or "US"'),
    ('[calls]\ndefault_region = "gb"', "calls.default_region = \"gb\" in {}: "
                                       "write the region in capitals: 'GB'"),
    ('[calls]\ncaller_id = "+27 11"', 'calls.caller_id = "+27 11" in {}: '
                                      'must be 3-20 digits with an optional leading +, or ""'),
    ('[asterisk]\nhost = ""', 'asterisk.host = "" in {}: must not be empty'),
    ('[webhook]\nurl = "ftp://crm.example.com/"', 'webhook.url = "ftp://crm.example.com/" in {}: '
                                                  "it must be an http(s) URL with a host"),
    ('[api]\npublic_url = "pbx.example.com"', 'api.public_url = "pbx.example.com" in {}: '
                                              "it must be an http(s) URL with a host"),
    ('[api]\nport = "8080"', 'api.port = "8080" in {}: must be a whole number'),
    ('[store]\npath = 5', "store.path = 5 in {}: must be a string"),
])
def test_each_kind_of_bad_value_is_refused_naming_the_setting_and_the_file(
        tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "callconnect.toml"
    path.write_text(toml + "\n")
    assert refused({}, path).message == message.format(path)


def test_a_secret_is_never_shown_in_an_error(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.toml"
    path.write_text('[api]\ntokens = ["good", " leaked-token"]\n[asterisk]\nsecret = 5\n')
    error = refused({}, path)
    assert "leaked-token" not in error.message
    assert error.message.startswith(f"asterisk.secret in {path}: must be a string (and 1 more: "
                                    "api.tokens)")


def test_a_webhook_url_must_meet_the_outbound_policy(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.toml"
    path.write_text('[webhook]\nurl = "http://127.0.0.1:9/hook"\n')
    error = refused({}, path)
    assert error.details == {"setting": "webhook.url", "source": str(path)}
    assert error.message.startswith("webhook.url is refused: host 127.0.0.1 is a non-public address")
    assert error.message.endswith(f"(in {path})")
    path.write_text('[webhook]\nurl = "http://127.0.0.1:9/hook"\n[outbound]\nallow_private = true\n')
    assert load_config(path, environ={}).webhook.url == "http://127.0.0.1:9/hook"


def test_a_bad_calling_window_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.toml"
    path.write_text('[compliance]\ncalling_hours = "25:00-26:00"\n')
    error = refused({}, path)
    assert error.details == {"setting": "compliance.calling_hours", "source": str(path)}
    assert error.message.endswith(f"(in {path})")
