"""Layout 1 of the assignment: one JSON document for the whole fleet, and the records
of last runs in ``{root}/ran``. What releases before issue 18 read and write; the
controller writes it while any member is of such a release (a rolling upgrade), and
every node still reads it (``coordinator``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from redis_forwarder.coordination import paths as znodes
from redis_forwarder.coordination.assignment import Assignment
from redis_forwarder.coordination.parts import Ran
from redis_forwarder.coordination.paths import Paths
from redis_forwarder.coordination.zk import NodeExists, NoNode, ZooKeeperSession

if TYPE_CHECKING:
    from redis_forwarder.coordination.control import InForce

log = logging.getLogger(__name__)

# ZooKeeper refuses a request over 1 MB (jute.maxbuffer, 0xfffff bytes).
LIMIT = 0xFFFFF - 4096


async def write(
    session: ZooKeeperSession,
    paths: Paths,
    controller: str,
    in_force: InForce,
    owners: Assignment,
    standbys: Assignment,
    ran: Ran,
    shard_names: dict[str, Any] | None,
) -> bool:
    """Write the whole document over the one read (compare-and-set) when anything
    changed, and the records of last runs apart (a znode nobody watches: it wakes no
    node); False when another controller wrote first, or the document is too large."""
    if ran != in_force.ran:
        await _write_ran(session, paths, ran)
    unchanged = (owners, standbys, shard_names) == (
        in_force.owners,
        in_force.standbys,
        in_force.shard_names,
    )
    if in_force.layout == 1 and unchanged:
        return True
    document = znodes.assignment_document(
        owners, controller, in_force.serial + 1, shard_names, standbys
    )
    if len(document) > LIMIT:
        log.error(
            "the assignment is %d bytes, over ZooKeeper's 1 MB limit in layout 1, which a "
            "member of an older release keeps the fleet on: upgrade it (status lists the "
            "members' versions)",
            len(document),
        )
        return False
    if not in_force.marker_exists:
        try:
            await session.create(paths.assignment, document)
        except NodeExists:
            return False
        return True
    await session.set(paths.assignment, document, version=in_force.marker_version)
    return True


async def _write_ran(session: ZooKeeperSession, paths: Paths, ran: Ran) -> None:
    data = znodes.ran_document(ran)
    try:
        await session.set(paths.ran, data)
    except NoNode:
        await session.create(paths.ran, data)
