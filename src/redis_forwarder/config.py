"""The forwarder's config file (TOML): ``[source]``, ``[targets.NAME]``, ``[[route]]``,
``[node]`` (docs/configuration.md). ``[coordination]`` is accepted as it is until high
availability lands.

Errors name the key and say how to fix it (exit code 2). Types are strict (issue 14:
``maxlen = "10"``, ``heartbeat = true``, ``max_in_flight = 2.0`` were coerced): a
string, a boolean or a float where a number or an integer is meant is an error; an
integer where a float is meant is fine. Passwords are never written in
the file: ``password_env`` names an environment variable, ``password_file`` a file.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from redis_forwarder.bridge_echoes import echo_groups
from redis_forwarder.bridge_rings import ring_check
from redis_forwarder.bridges import bridge_loop_check, identities
from redis_forwarder.errors import ConfigError
from redis_forwarder.model import Address, DeploymentKind
from redis_forwarder.route_loops import loop_check
from redis_forwarder.routes import RouteConfig
from redis_forwarder.settings import (
    DEFAULT_SOCKET_TIMEOUT,
    Credentials,
    DeploymentSettings,
    Tls,
    read_password,
    shape_problem,
)
from redis_forwarder.validation import Located, problems


class TlsConfig(BaseModel):
    """TLS to a deployment's Redis nodes and sentinels (docs/security.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    ca_file: str = Field(min_length=1)  # the CA that signs the servers' certificates
    cert_file: str | None = None  # the client's certificate, when servers ask for one
    key_file: str | None = None
    check_name: bool = True  # the server's certificate must name the address connected to

    @model_validator(mode="after")
    def _check(self) -> Self:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("give cert_file and key_file together (the client's certificate)")
        return self

    def settings(self) -> Tls:
        return Tls(self.ca_file, self.cert_file, self.key_file, self.check_name)


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: DeploymentKind = Field(strict=False)  # strict would want the enum itself
    addresses: list[str] = Field(min_length=1)
    masters: list[str] = Field(default_factory=list)
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    sentinel_username: str | None = None
    sentinel_password_env: str | None = None
    sentinel_password_file: str | None = None
    socket_timeout: float = Field(default=DEFAULT_SOCKET_TIMEOUT, gt=0, le=60)
    # Pub/sub may read from a replica (messages reach replicas too); streams cannot.
    read_from: Literal["master", "replica"] = "master"
    tls: TlsConfig | None = None  # for the Redis nodes and the sentinels alike
    # What bridges call this deployment (issue 20): the origin stamped on stream entries
    # and {origin} in names. Every fleet bridging it must use the same; unset: its name
    # in this config ("source" for [source]).
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

    @model_validator(mode="after")
    def _check(self) -> Self:
        for text in self.addresses:
            Address.parse(text)  # ValueError names the bad address
        problem = shape_problem(self.kind, len(self.addresses), bool(self.masters))
        if problem:
            raise ValueError(problem)
        return self

    def settings(self) -> DeploymentSettings:
        tls = self.tls.settings() if self.tls is not None else None
        if tls is not None:
            tls.context()  # a missing or bad file: an error now, naming it
        return DeploymentSettings(
            kind=self.kind,
            addresses=tuple(Address.parse(a) for a in self.addresses),
            masters=tuple(self.masters),
            redis=Credentials(
                self.username,
                read_password(env=self.password_env, file=self.password_file, what="[source]"),
                tls,
            ),
            sentinel=Credentials(
                self.sentinel_username,
                read_password(
                    env=self.sentinel_password_env,
                    file=self.sentinel_password_file,
                    what="[source] sentinel",
                ),
                tls,
            ),
            socket_timeout=self.socket_timeout,
        )


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str | None = None
    # /metrics, /healthz, /readyz: "host:port", or a port alone for loopback only (the
    # endpoint has no authentication; expose it with "0.0.0.0:PORT" behind a firewall).
    metrics: str | None = None
    # The fleet page (/ and /fleet.json) on the metrics address: the fleet's members,
    # hosts and tasks, read from ZooKeeper with the node's identity. Off: 404.
    fleet_page: bool = True
    topology_interval: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.metrics is not None:
            if self.metrics.strip().isdigit():
                object.__setattr__(self, "metrics", f"127.0.0.1:{self.metrics.strip()}")
            Address.parse(self.metrics)  # ValueError names the bad address
        return self


class CoordinationConfig(BaseModel):
    """ZooKeeper high availability: several nodes share the tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    zookeeper: str = Field(min_length=1)  # "host:port,host:port[/chroot]"
    root: str = Field(default="/redis-forwarder", pattern=r"^(/[A-Za-z0-9_.-]+)+$")
    session_timeout: float = Field(default=6.0, ge=2, le=120)
    # A loop that makes no progress for this long gives its session up (default: half
    # the session timeout).
    stall_timeout: float | None = Field(default=None, gt=0, le=120)
    # ZooKeeper digest authentication: every znode the fleet creates is readable and
    # writable by this identity only. The password comes from the environment or a file.
    username: str | None = Field(default=None, pattern=r"^[^:\s]+$")
    password_env: str | None = None
    password_file: str | None = None
    # A pub/sub standby's ring (issue 15): how far back it keeps what it hears (default:
    # three session timeouts and 5 s: a takeover waits for the old owner's session to
    # expire, then a cycle), and at most how many bytes (then the oldest falls off,
    # counted).
    standby_window: float | None = Field(default=None, gt=0, le=3600)
    standby_max_bytes: int = Field(default=256 << 20, ge=1 << 20)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.standby_window is not None and self.standby_window <= self.session_timeout:
            raise ValueError(
                "standby_window must be above session_timeout: a standby takes over only "
                "after the old owner's session expired, and must still hold what the old "
                "owner had not written by then"
            )
        for server in self.zookeeper.split("/", 1)[0].split(","):
            Address.parse(server.strip())  # ValueError names the bad address
        has_password = bool(self.password_env or self.password_file)
        if bool(self.username) != has_password:
            raise ValueError(
                "ZooKeeper authentication needs both username and password_env (or "
                "password_file); give both or neither"
            )
        if self.stall_timeout is not None and self.stall_timeout >= self.session_timeout:
            raise ValueError(
                "stall_timeout must be below session_timeout: a stalled node must give its "
                "session up before ZooKeeper would expire it anyway"
            )
        return self

    @property
    def ring_window(self) -> float:
        return self.standby_window or 3 * self.session_timeout + 5

    @property
    def stall_limit(self) -> float:
        return self.stall_timeout or self.session_timeout / 2

    def credentials(self) -> Credentials | None:
        """The identity for ZooKeeper's digest scheme, its password read now; or None."""
        if not self.username:
            return None
        password = read_password(
            env=self.password_env, file=self.password_file, what="[coordination]"
        )
        return Credentials(self.username, password or "")


class ForwarderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    source: SourceConfig
    targets: dict[str, SourceConfig] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list, alias="route")
    node: NodeConfig = Field(default_factory=NodeConfig)
    coordination: CoordinationConfig | None = None
    _together: dict[str, str] = PrivateAttr(default_factory=dict)  # set by _check

    @model_validator(mode="after")
    def _check(self) -> Self:
        # Located: each error at its key and line (issue 14: these had neither).
        if "source" in self.targets:
            raise Located(
                ("targets", "source"), '[targets.source] is reserved: "source" means the source'
            )
        names = [r.name for r in self.routes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            second = [i for i, n in enumerate(names) if n == repeated[0]][1]
            raise Located(
                ("route", second, "name"), f"route names must be unique; repeated: {repeated}"
            )
        known = ", ".join(["source", *self.targets])
        for index, route in enumerate(self.routes):
            if route.to.target != "source" and route.to.target not in self.targets:
                raise Located(
                    ("route", index, "to", "target"),
                    f"route {route.name!r} writes to target {route.to.target!r}, which no "
                    f"[targets.{route.to.target}] table defines (known: {known})",
                )
            read = route.from_.deployment
            if read != "source" and read not in self.targets:
                raise Located(
                    ("route", index, "from", "deployment"),
                    f"route {route.name!r} reads deployment {read!r}, which the config does "
                    f'not define: "source" ([source]) or a [targets.NAME] table (known: '
                    f"{known})",
                )
            if read != "source" and self.targets[read].kind is DeploymentKind.CLUSTER:
                raise Located(
                    ("route", index, "from", "deployment"),
                    f"route {route.name!r} reads the Redis Cluster {read!r}: reading a "
                    "cluster other than [source] is not built yet (its shard names are "
                    "agreed for [source] only); make it the [source], or read it from a "
                    "config of its own",
                )
        identity = self._identities()  # parsed once: every route's checks use it
        for route in self.routes:  # before the checks: an {origin} is compared as named
            named = (identity[route.from_.deployment], identity[route.to.target])
            if named != (route.from_.deployment, route.to.target):  # (routes compare equal
                route._identities = named  # to a reload's only when they are the same)
        for index, route in enumerate(self.routes):
            self._loop_check(index, route, identity)
        self._bridge_loop_check(identity)
        if self.coordination is not None:
            slowest = max((r.heartbeat for r in self.routes), default=0.0)
            if self.coordination.session_timeout < 2 * slowest:
                raise Located(
                    ("coordination", "session_timeout"),
                    f"[coordination] session_timeout = {self.coordination.session_timeout:g} "
                    f"is less than twice the slowest route heartbeat ({slowest:g} s): a task "
                    "could not notice a dead source within a session; raise it or lower the "
                    "heartbeat",
                )
        return self

    def deployment(self, name: str) -> SourceConfig:
        """``source`` or a target's name: its table."""
        return self.source if name == "source" else self.targets[name]

    def same_deployment(self, one: str, other: str) -> bool:
        """One deployment under both names (``bridges.identities``)."""
        identity = self._identities()
        return identity[one] == identity[other]

    def _identities(self) -> dict[str, str]:
        return identities({"source": self.source, **self.targets})

    def _known_shards(self, name: str) -> list[str] | None:
        """A Sentinel deployment's shards are its master names, known now."""
        table = self.deployment(name)
        return table.masters if table.kind is DeploymentKind.SENTINEL else None

    def _loop_check(self, index: int, route: RouteConfig, identity: dict[str, str]) -> None:
        read, written = route.from_.deployment, route.to.target
        if identity[read] != identity[written]:
            return  # another deployment: its names are not the ones read here
        if read != written:  # (a route to its own deployment says so itself)
            route._writes_to_source = True  # a private attribute: frozen fields stay frozen
        shards = self._known_shards(read)
        if shards is None and read == written:
            return  # RouteConfig checked it just so
        try:
            loop_check(route, shards)
        except Located as exc:
            raise Located(("route", index, *exc.loc), str(exc)) from None

    def _bridge_loop_check(self, identity: dict[str, str]) -> None:
        shards = {name: self._known_shards(name) for name in identity}
        bridge_loop_check(self.routes, identity, shards)
        ring_check(self.routes, identity, shards)
        self._together = echo_groups(self.routes, identity)

    @property
    def together(self) -> dict[str, str]:
        """Route -> group: the routes whose tasks run on one node (a pub/sub bridge's
        two directions, ``bridge_echoes``)."""
        return self._together

    @property
    def cut_off_after(self) -> float:
        """Seconds without an answer from any server of a Redis deployment after which a
        node may be cut off from it (and its tasks run elsewhere): a session timeout, as
        for a node that died, plus two topology refreshes, so that a node's refresh
        period alone never looks like silence."""
        session = self.coordination.session_timeout if self.coordination else 0.0
        return session + 2 * self.node.topology_interval

    def fingerprint(self) -> str:
        """A hash of what decides forwarding (deployments and routes, not secrets: only
        where they come from), published by each node so that the controller assigns
        work only to nodes that run the same config."""
        relevant = self.model_dump(
            mode="json", include={"source", "targets", "routes"}, exclude_defaults=True
        )  # defaults left out: a release that adds a key (to.origin) changes no fingerprint
        text = json.dumps(relevant, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_config(path: Path | str) -> ForwarderConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(str(path), ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot be read: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    try:
        return ForwarderConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(path), problems(exc, "docs/configuration.md", text)) from exc
