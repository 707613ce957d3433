"""The lab: a simulated bramble cluster on this machine (docs/lab.md)."""
