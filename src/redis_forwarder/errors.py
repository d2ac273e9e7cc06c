"""The error tree. Every error a user can see is one of these, with a message that says
what is wrong and what to do about it. Third-party exceptions are translated at the
boundary that calls the library (keeping the cause as ``__cause__``), never shown raw.

::

    ForwarderError                  exit 1
    ├── UsageError                  exit 2   a bad argument, config or spec
    │   ├── SpecError                        a topology spec that does not validate
    │   ├── ConfigError                      a forwarder config that does not validate
    │   └── DuplicateNodeIdError             another live node runs with this node id
    ├── NotBuiltError               exit 69  a command that a later release fills in
    ├── MissingExtraError           exit 3   an optional extra (pip install '...[lab]') is missing
    ├── AddressInUseError           exit 3   run: the [node] metrics address is taken
    ├── DiscoveryError              exit 5   the deployment's topology could not be learned
    │   ├── UnreachableError                 no seed answered (each seed's reason listed)
    │   ├── AuthenticationError              a wrong user or password (never shown)
    │   ├── WrongServerError                 a seed is not what the config says it is
    │   ├── UnknownMasterError               no sentinel monitors that master name
    │   └── MasterUnconfirmedError           the named master does not say it is one
    ├── CoordinationError           exit 6   ZooKeeper could not be used
    │   ├── ZooKeeperUnreachableError        no ZooKeeper server answered in time
    │   └── ZooKeeperRefusedError            the znodes' ACL does not admit our identity
    └── LabError                    exit 3   the local lab could not do what was asked
        ├── MissingBinaryError               redis-server, java, ... not installed
        ├── PortInUseError                   a spec port is taken by another process
        ├── LabAlreadyUpError                a lab already runs in that directory
        ├── LabNotFoundError                 no lab in that directory
        ├── LabBusyError                     another lab command holds the directory
        └── LabStartError           exit 4   a process died or the deployment never got ready
            ├── ProcessDiedError
            └── NotReadyError

The exit codes are part of the command line's contract (docs/cli.md).

Internal errors: raised and handled inside the package, never shown to the user as
they are; each lives with the boundary that raises it, and is listed here so the tree
is whole::

    CoordinationError
    └── ZooKeeperError      coordination/zk.py   a ZooKeeper call failed (connection
        │                                        loss, expiry, timeout): the cycle tries
        │                                        again; FleetClient raises it for the CLI
        ├── NodeExists                           create: the znode is there already
        ├── NoNode                               the znode is not there
        └── Refused                              the ACL refused us; becomes
                                                 ZooKeeperRefusedError (fatal)
    ConnectionLost          resp.py              a data-path connection failed or was
                                                 reset: a gap, then a reconnect
    ReplyError              resp.py (hiredis's)  an error reply, returned as a value
    NodeFailed              topology/connections.py   a server did not answer discovery:
    └── CommandRefused                           the next seed is tried; an error reply
    TemplateError (ValueError)  templates.py     a bad name template: a ConfigError line
    ProbeFailed             lab/probes.py        a readiness probe's answer: not ready yet
"""

from __future__ import annotations

from typing import ClassVar


class ForwarderError(Exception):
    """Base of every error the user may see. ``exit_code`` is the CLI's exit status."""

    exit_code: ClassVar[int] = 1


class UsageError(ForwarderError):
    """Bad input from the user: an argument, a config file, a topology spec."""

    exit_code = 2


class InvalidFileError(UsageError):
    """A file of the user's that does not parse or validate.

    ``problems`` lists one line per problem, each naming the key path.
    """

    noun: ClassVar[str] = "file"

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.noun} {source} is not valid:\n{lines}")


class SpecError(InvalidFileError):
    noun = "topology spec"


class ConfigError(InvalidFileError):
    noun = "config"


class DuplicateNodeIdError(UsageError):
    """Another live process is registered in the fleet under this node's id."""

    def __init__(self, node_id: str, root: str, holder: str) -> None:
        self.node_id = node_id
        super().__init__(
            f"node id {node_id!r} is taken in {root}: {holder} runs with it; give this node "
            "another id (--node-id or [node] id), or stop that one first"
        )


class NotBuiltError(ForwarderError):
    """A command whose shape is fixed but whose work lands in a later release."""

    exit_code = 69  # EX_UNAVAILABLE


class MissingExtraError(ForwarderError):
    """A command needs a package from an optional extra that is not installed.

    The node's image installs the forwarder without extras; the lab's tools (drill
    timelines: matplotlib) come with ``pip install 'redis-forwarder[lab]'``.
    """

    exit_code = 3  # the environment, like a missing binary

    def __init__(self, module: str, extra: str, needed_for: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{needed_for} needs {module}, which is not installed; install the {extra!r} "
            f"extra: pip install 'redis-forwarder[{extra}]'"
        )


class AddressInUseError(ForwarderError):
    """An address the node must listen on is held by another process: the environment,
    like the lab's ports (the config may be right; the other process may be wrong)."""

    exit_code = 3


class DiscoveryError(ForwarderError):
    """The deployment's topology could not be learned."""

    exit_code = 5


class UnreachableError(DiscoveryError):
    def __init__(self, what: str, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        lines = "\n".join(f"  - {address}: {reason}" for address, reason in reasons.items())
        super().__init__(
            f"no {what} answered:\n{lines}\nCheck the addresses in the config and that the "
            "servers run (redis-forwarder lab status, for a lab)."
        )


class AuthenticationError(DiscoveryError):
    def __init__(self, address: str, what: str, reason: str) -> None:
        super().__init__(
            f"{address} refused our credentials ({reason}); check the {what} username and "
            "password (password_env / password_file in the config)"
        )


class WrongServerError(DiscoveryError):
    pass


class UnknownMasterError(DiscoveryError):
    pass


class MasterUnconfirmedError(DiscoveryError):
    pass


class CoordinationError(ForwarderError):
    """ZooKeeper refused or failed an operation the node needs."""

    exit_code = 6


class ZooKeeperUnreachableError(CoordinationError):
    """No server answered within ``timeout``; or, with ``refusals`` (server -> why),
    every server refused the connection at once, which is an answer too."""

    def __init__(
        self, hosts: str, timeout: float, reason: str, refusals: dict[str, str] | None = None
    ) -> None:
        if refusals:
            each = ", ".join(f"{server}: {why}" for server, why in refusals.items())
            what = f"no ZooKeeper server of {hosts} takes connections ({each})"
        else:
            what = f"ZooKeeper at {hosts} did not answer within {timeout:.0f}s ({reason})"
        super().__init__(
            f"{what}; check [coordination] zookeeper in the config and that the ensemble "
            "is up (lab status shows the lab's)"
        )


class ZooKeeperRefusedError(CoordinationError):
    def __init__(self, root: str, authenticated: bool) -> None:
        hint = (
            "the username and password given are not the ones the fleet's znodes admit"
            if authenticated
            else "the fleet's znodes admit only an authenticated identity: set [coordination] "
            "username and password_env (or password_file)"
        )
        super().__init__(f"ZooKeeper refused access to {root}: {hint} (docs/security.md)")


class LabError(ForwarderError):
    """The local lab could not do what was asked; nothing it started is left running."""

    exit_code = 3


class MissingBinaryError(LabError):
    def __init__(self, binary: str, package: str) -> None:
        self.binary = binary
        self.package = package
        super().__init__(
            f"{binary} was not found; install the Debian package {package} "
            f"(apt-get install {package}) or run ./scripts/install"
        )


class PortInUseError(LabError):
    def __init__(self, address: str, owner: str, source: str) -> None:
        self.address = address
        super().__init__(
            f"{address} ({owner}) is already in use by another process; stop that process "
            f"or change the port in {source}"
        )


class LabAlreadyUpError(LabError):
    pass


class LabNotFoundError(LabError):
    pass


class LabBusyError(LabError):
    pass


class LabStartError(LabError):
    exit_code = 4


class ProcessDiedError(LabStartError):
    def __init__(self, name: str, exit_status: int | None, log_path: str, log_tail: str) -> None:
        self.name = name
        self.log_tail = log_tail
        status = "" if exit_status is None else f" with status {exit_status}"
        super().__init__(
            f"{name} exited{status} during start; the last lines of its log {log_path}:\n{log_tail}"
        )


class NotReadyError(LabStartError):
    def __init__(self, timeout: float, pending: list[str]) -> None:
        self.pending = pending
        lines = "\n".join(f"  - {p}" for p in pending)
        super().__init__(
            f"the deployment was not ready after {timeout:.0f}s; still waiting for:\n{lines}\n"
            "Look at the logs in the lab directory, or give more time with --timeout."
        )
