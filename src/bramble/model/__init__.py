"""The cluster model: cluster.yml and macs.yml, validated, and the Pis derived from them."""

from bramble.model.cluster import (
    MAC_FILE,
    MODEL_FILE,
    Cluster,
    Pi,
    load_cluster,
    load_cluster_cached,
)
from bramble.model.errors import ModelError
from bramble.model.macfile import dump_mac_file, read_mac_file, write_mac_file
from bramble.model.schema import ClusterModel, MacEntry

__all__ = [
    "MAC_FILE",
    "MODEL_FILE",
    "Cluster",
    "ClusterModel",
    "MacEntry",
    "ModelError",
    "Pi",
    "dump_mac_file",
    "load_cluster",
    "load_cluster_cached",
    "read_mac_file",
    "write_mac_file",
]
