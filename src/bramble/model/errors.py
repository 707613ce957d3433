"""Errors raised while reading the cluster model."""

from __future__ import annotations


class ModelError(Exception):
    """The cluster model or the MAC file cannot be read; the message says what to fix."""
