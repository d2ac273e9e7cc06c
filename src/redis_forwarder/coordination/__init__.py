"""High availability through ZooKeeper: session state (``zk``, the only module that
imports kazoo), the znode layout (``paths``), membership, controller election and the
assignment (pure, ``assignment``), task ownership, and the coordinator that a node's
reconcile loop reads."""
