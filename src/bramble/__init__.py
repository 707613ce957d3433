"""bramble: provision and run network-booted Raspberry Pi clusters."""

__version__ = "0.1.0"
