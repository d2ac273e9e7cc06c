"""Failover drills: a steady load, a real fault, and what it cost (lost, duplicated,
reordered, recovery time), checked against each route's guarantee."""
