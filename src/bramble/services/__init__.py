"""Cluster services: the head's server, the Pi agent, and the code they share.

The wire contract (beacon, REST API, config keys) is docs/services-protocol.md.
"""
