"""Which models to serve: TF-Serving's ModelServerConfig, from flags or a text-proto file.

Why TF-Serving's own proto: a config written for this server works unchanged with
`tensorflow_model_server --model_config_file=...` (and the other way round), including
model_version_policy (latest / all / specific) and version_labels.
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig

TENSORFLOW_PLATFORM = "tensorflow"


class ConfigError(ValueError):
    """A model config that cannot be served; the message says what to fix."""


def single_model_config(name: str, base_path: str | Path) -> ModelServerConfig:
    """What --model_name/--model_base_path mean: one model, latest-version policy."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(Path(base_path).expanduser().resolve())
    model.model_platform = TENSORFLOW_PLATFORM
    return validate(config)


def parse_config_text(text: str, origin: str = "<text>") -> ModelServerConfig:
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ConfigError(f"Invalid protobuf file: '{origin}': {error}") from None
    return validate(config)


def read_config_file(path: str | Path) -> ModelServerConfig:
    """Parses a ModelServerConfig text proto; relative base paths are taken from the cwd, as
    TF-Serving's file system does."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read model config file {path}: {error.strerror}") from None
    return parse_config_text(text, str(path))


def validate(config: ModelServerConfig) -> ModelServerConfig:
    """Resolves base paths and rejects what this server cannot serve."""
    if config.HasField("custom_model_config"):
        raise ConfigError("custom_model_config is not supported; use model_config_list")
    seen: set[str] = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ConfigError("every model config needs a name")
        if model.name in seen:
            raise ConfigError(f"model name {model.name!r} appears twice in the model config")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"model {model.name!r} has no base_path")
        if model.model_platform and model.model_platform != TENSORFLOW_PLATFORM:
            raise ConfigError(f"model {model.name!r}: platform {model.model_platform!r} is not supported "
                              f"(only {TENSORFLOW_PLATFORM!r})")
        model.model_platform = TENSORFLOW_PLATFORM
        model.base_path = str(Path(model.base_path).expanduser().resolve())
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "latest" and policy.latest.num_versions < 0:
            raise ConfigError(f"model {model.name!r}: latest.num_versions must be positive")
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            raise ConfigError(f"model {model.name!r}: specific version policy lists no versions")
    return config
