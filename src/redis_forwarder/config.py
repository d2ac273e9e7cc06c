"""The forwarder's config file (TOML). This release reads ``[source]``: the deployment
to read from. The forwarding engine adds ``[targets.*]``, ``[[route]]`` and the rest;
their tables are accepted here and validated when that lands.

Errors name the key and say how to fix it (exit code 2). Passwords are never written in
the file: ``password_env`` names an environment variable, ``password_file`` a file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from redis_forwarder.errors import ConfigError
from redis_forwarder.model import Address, DeploymentKind
from redis_forwarder.topology.settings import (
    DEFAULT_SOCKET_TIMEOUT,
    Credentials,
    DeploymentSettings,
    read_password,
)
from redis_forwarder.validation import problems


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: DeploymentKind
    addresses: list[str] = Field(min_length=1)
    masters: list[str] = Field(default_factory=list)
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    sentinel_username: str | None = None
    sentinel_password_env: str | None = None
    sentinel_password_file: str | None = None
    socket_timeout: float = Field(default=DEFAULT_SOCKET_TIMEOUT, gt=0, le=60)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for text in self.addresses:
            Address.parse(text)  # ValueError names the bad address
        if self.kind is DeploymentKind.SENTINEL and not self.masters:
            raise ValueError('kind = "sentinel" needs masters = ["name", ...] to follow')
        if self.kind is not DeploymentKind.SENTINEL and self.masters:
            raise ValueError(f'masters is for kind = "sentinel", not {self.kind!r}')
        if self.kind is DeploymentKind.STANDALONE and len(self.addresses) != 1:
            raise ValueError("a standalone source is one server: give one address")
        return self

    def settings(self) -> DeploymentSettings:
        return DeploymentSettings(
            kind=self.kind,
            addresses=tuple(Address.parse(a) for a in self.addresses),
            masters=tuple(self.masters),
            redis=Credentials(
                self.username,
                read_password(env=self.password_env, file=self.password_file, what="[source]"),
            ),
            sentinel=Credentials(
                self.sentinel_username,
                read_password(
                    env=self.sentinel_password_env,
                    file=self.sentinel_password_file,
                    what="[source] sentinel",
                ),
            ),
            socket_timeout=self.socket_timeout,
        )


class ForwarderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: SourceConfig
    # Filled in by the forwarding engine; accepted as they are until then.
    targets: dict[str, Any] = Field(default_factory=dict)
    routes: list[dict[str, Any]] = Field(default_factory=list, alias="route")
    coordination: dict[str, Any] = Field(default_factory=dict)


def load_config(path: Path | str) -> ForwarderConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot be read: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    try:
        return ForwarderConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(path), problems(exc, "docs/configuration.md")) from exc
