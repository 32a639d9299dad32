"""Where settings come from, and what is wrong with them.

The config is a pydantic model with one :class:`Section` per TOML table
(controller.config). :class:`Layers` gathers its raw values, each remembered
with where it came from, in this order, later ones winning:

1. the defaults in the models;
2. the TOML file: unknown keys are refused, and relative paths (settings named
   ``path`` or ending in ``_dir`` or ``_file``) are read from the file's folder;
3. systemd credentials: ``$CREDENTIALS_DIRECTORY/<setting>`` (for example
   ``asterisk.secret``) for the secret settings;
4. the environment: ``CALLCONNECT_<SECTION>_<KEY>`` for any setting but tables
   and lists of tables (lists as ``a,b,c``), and ``CALLCONNECT_<SECTION>_<KEY>_FILE``
   naming a file that holds a secret setting.

A secret setting is a field declared with ``repr=False``: it never shows in a
repr, a log or an error. Secret files lose one trailing newline.

Every problem is a ConfigError that names the setting, its value (unless
secret) and where it came from: ``asterisk.port = 70000 in /etc/callconnect.toml:
must be at most 65535``. Unknown ``CALLCONNECT_*`` environment variables are
logged with the nearest known name; :data:`OTHER_VARIABLES` lists the ones that
are read elsewhere.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, get_origin

import structlog
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from controller.errors import ConfigError

log = structlog.get_logger(__name__)

ENV_PREFIX = "CALLCONNECT_"
FILE_SUFFIX = "_FILE"
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
MAX_SECRET_FILE_BYTES = 65536
# CALLCONNECT_* variables that are not settings, and what reads them: no
# warning for these. The one list of them.
OTHER_VARIABLES = {
    "CALLCONNECT_CONFIG": "the command line: the config file's path",
    "CALLCONNECT_URL": "the command-line client: the daemon's URL",
    "CALLCONNECT_TOKEN": "the command-line client: its API token",
    "CALLCONNECT_LAB_DIR": "sip-lab/lab: the lab's state folder",
    "CALLCONNECT_DEBIAN_MIRROR": "sip-lab/lab: the Debian mirror the lab's root comes from",
    "CALLCONNECT_FREESWITCH_SOURCES": "sip-lab/freeswitch-build: where the FreeSWITCH source tarballs are",
    "CALLCONNECT_LAB_CACHE": "sip-lab/freeswitch-build: the folder its builds are cached in",
    "CALLCONNECT_SOAK_SECONDS": "tests/lab/test_soak.py: how long the soak runs",
    "CALLCONNECT_BENCH_CPU_PARTS": "bench/cpu_parts.py: where the counted daemon writes its CPU by part",
}
_PATH_SUFFIXES = ("_dir", "_file")
_SHOWN_VALUE_CHARS = 60
# The types a setting from the environment may have; tables and lists of
# tables come from the file only.
_ENV_TYPES: tuple[Any, ...] = (str, bool, int, float, list[str])

M = TypeVar("M", bound=BaseModel)


class Origin(NamedTuple):
    where: str  # as a message says it: "in /etc/callconnect.toml", "from CALLCONNECT_API_PORT"
    source: str  # the file or variable alone, for the error's details


class Section(BaseModel):
    """One table of the config. Values must have their TOML type (no ``true``
    for a number, no ``30.5`` for a whole number); the environment's strings
    are converted first."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def problem(text: str) -> PydanticCustomError:
    """What a validator raises: ``text`` becomes the error's own words."""
    return PydanticCustomError("config", "{reason}", {"reason": text})


def is_secret(field: FieldInfo) -> bool:
    return field.repr is False


def is_path_setting(key: str) -> bool:
    return key == "path" or key.endswith(_PATH_SUFFIXES)


class Layers:
    """The raw settings of one load, and where each came from."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.data: dict[str, Any] = {}
        self.origins: dict[tuple[str, ...], Origin] = {}
        self.settings = _settings(model)

    def add_file(self, file: Path) -> None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {file} does not exist", path=str(file)) from exc
        except OSError as exc:
            raise ConfigError(f"config file {file} cannot be read: {exc.strerror}",
                              path=str(file)) from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}", path=str(file)) from exc
        folder = file.resolve().parent
        where = Origin(f"in {file}", str(file))
        for key, value in data.items():
            self.origins[(key,)] = where
            if isinstance(value, dict):
                for inner, item in value.items():
                    self.origins[(key, inner)] = where
                    if (key, inner) in self.settings and is_path_setting(inner) \
                            and isinstance(item, str) and item:
                        value[inner] = str((folder / item).resolve())
        self.data.update(data)

    def add_credentials(self, environ: Mapping[str, str]) -> None:
        """systemd's LoadCredential=: a file named after each secret setting."""
        folder = environ.get(CREDENTIALS_DIRECTORY)
        if not folder:
            return
        for where, field in self.settings.items():
            name = ".".join(where)
            file = Path(folder) / name
            if is_secret(field) and file.exists():
                text = _read_secret(file, where, f"credential {name}")
                self._set(where, _secret_value(text, field),
                          Origin(f"from credential {file}", str(file)))

    def add_env(self, environ: Mapping[str, str]) -> None:
        for where, field in self.settings.items():
            name = env_name(where)
            file_name = name + FILE_SUFFIX
            if is_secret(field) and file_name in environ:
                if name in environ:
                    raise ConfigError(f"{_dotted(where)}: set {name} or {file_name}, not both",
                                      setting=_dotted(where), source=file_name)
                text = _read_secret(Path(environ[file_name]), where, file_name)
                self._set(where, _secret_value(text, field),
                          Origin(f"from {file_name} ({environ[file_name]})", file_name))
            elif name in environ:
                self._set(where, _from_env(environ[name], field, where, name),
                          Origin(f"from {name}", name))
        self._warn_unknown(environ)

    def build(self, model: type[M]) -> M:
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            errors = exc.errors()
            first = self.error(errors[0])
            if len(errors) > 1:
                others = ", ".join(dict.fromkeys(_setting(e["loc"]) for e in errors[1:]))
                first.message += f" (and {len(errors) - 1} more: {others})"
            raise first from None

    def error(self, error: ErrorDetails) -> ConfigError:
        loc = error["loc"]
        setting = _setting(loc)
        key = tuple(str(part) for part in loc if isinstance(part, str))
        origin = self.origin(key)
        field = self.settings.get(key[:2]) or self.settings.get(key[:1])
        # An unknown key may be a misspelt secret: its value is not shown either.
        hidden = (field is not None and is_secret(field)) or error["type"] == "extra_forbidden"
        value = "" if hidden else _shown(error["input"])
        text = _words(error)
        if error["type"] == "extra_forbidden":
            text += _did_you_mean(setting, [_dotted(k) for k in self.settings]
                                  + [_dotted(k[:1]) for k in self.settings])
        if origin is None:
            return ConfigError(f"{setting}{value}: {text}", setting=setting)
        return ConfigError(f"{setting}{value} {origin.where}: {text}", setting=setting,
                           source=origin.source)

    def origin(self, key: tuple[str, ...]) -> Origin | None:
        """Where the setting at ``key`` (or the table holding it) was given."""
        for end in range(len(key), 0, -1):
            if key[:end] in self.origins:
                return self.origins[key[:end]]
        return None

    def recheck(self, exc: ConfigError) -> ConfigError:
        """A check made on the built config, told where its setting came from."""
        origin = self.origin(tuple(str(exc.details.get("setting", "")).split(".")))
        if origin is None:
            return exc
        return ConfigError(f"{exc.message} ({origin.where})",
                           **{**exc.details, "source": origin.source})

    def _set(self, where: tuple[str, ...], value: Any, origin: Origin) -> None:
        table: Any = self.data
        for part in where[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                return  # the file made this a non-table, which the model refuses
        table[where[-1]] = value
        self.origins[where] = origin

    def _warn_unknown(self, environ: Mapping[str, str]) -> None:
        known = {env_name(where) for where in self.settings}
        known |= {env_name(where) + FILE_SUFFIX
                  for where, field in self.settings.items() if is_secret(field)}
        known |= set(OTHER_VARIABLES)
        for name in sorted(environ):
            if name.startswith(ENV_PREFIX) and name not in known:
                nearest = difflib.get_close_matches(name, sorted(known), n=1)
                log.warning("config.unknown_environment_variable", variable=name,
                            did_you_mean=nearest[0] if nearest else None,
                            hint="not a setting, so it is ignored")


def env_name(where: tuple[str, ...]) -> str:
    return ENV_PREFIX + "_".join(where).upper()


def _dotted(where: tuple[str, ...]) -> str:
    return ".".join(where)


def _settings(model: type[BaseModel]) -> dict[tuple[str, ...], FieldInfo]:
    """Every setting, by (section, key) or (key,) for the top-level ones."""
    found: dict[tuple[str, ...], FieldInfo] = {}
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            for key, inner in kind.model_fields.items():
                found[(name, key)] = inner
        else:
            found[(name,)] = field
    return found


def _setting(loc: tuple[int | str, ...]) -> str:
    """The setting an error is about: its location up to the first list index."""
    parts: list[str] = []
    for part in loc:
        if not isinstance(part, str):
            break
        parts.append(part)
    return ".".join(parts)


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _from_env(text: str, field: FieldInfo, where: tuple[str, ...], name: str) -> Any:
    """An environment variable's string as the setting's type (the model checks the rest)."""
    kind: Any = field.annotation
    if kind is str:
        return text
    if kind == list[str]:
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind in _ENV_TYPES or get_origin(kind) is Literal:
        try:
            return _adapter(kind).validate_python(text)
        except ValidationError as exc:
            shown = "" if is_secret(field) else f" = {json.dumps(text)[:_SHOWN_VALUE_CHARS]}"
            raise ConfigError(f"{_dotted(where)}{shown} from {name}: {_words(exc.errors()[0])}",
                              setting=_dotted(where), source=name) from None
    raise ConfigError(f"{_dotted(where)} from {name}: cannot be set from the environment; "
                      "set it in the config file", setting=_dotted(where), source=name)


def _read_secret(file: Path, where: tuple[str, ...], source: str) -> str:
    setting = _dotted(where)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        problem_text = "does not exist"
    except OSError as exc:
        problem_text = f"cannot be read: {exc.strerror}"
    else:
        if len(data) > MAX_SECRET_FILE_BYTES:
            problem_text = f"is over {MAX_SECRET_FILE_BYTES} bytes"
        else:
            try:
                return data.decode("utf-8").removesuffix("\n")
            except UnicodeDecodeError:
                problem_text = "is not UTF-8 text"
    raise ConfigError(f"{setting} from {source}: the file {file} {problem_text}",
                      setting=setting, source=source)


def _secret_value(text: str, field: FieldInfo) -> Any:
    if field.annotation == list[str]:  # one item a line, or comma-separated
        return [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]
    return text


def _shown(value: Any) -> str:
    """` = value` as TOML would write it, shortened; nothing for tables."""
    if isinstance(value, dict):
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > _SHOWN_VALUE_CHARS:
        text = text[:_SHOWN_VALUE_CHARS - 3] + "..."
    return f" = {text}"


_WORDS = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false (or 1/0, yes/no, on/off)",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be a table",
    "dict_type": "must be a table",
    "dataclass_type": "must be a table",
    "extra_forbidden": "unknown setting",
    "missing": "is required",
}


def _words(error: ErrorDetails) -> str:
    """What is wrong, in the config's own words."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _WORDS:
        return _WORDS[kind]
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx['ge'])}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx['le'])}"
    if kind == "greater_than":
        return f"must be more than {_number(ctx['gt'])}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    return str(error["msg"])


def _number(bound: float) -> str:
    return str(int(bound)) if isinstance(bound, float) and bound.is_integer() else str(bound)


def _did_you_mean(name: str, known: list[str]) -> str:
    nearest = difflib.get_close_matches(name, sorted(set(known)), n=1)
    return f" (did you mean {nearest[0]}?)" if nearest else ""
