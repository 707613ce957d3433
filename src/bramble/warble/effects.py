"""What LIGHTS and PLAYSOUND do: through an Effects object, after the runtime validated them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class LightEvent:
    index: int
    red: int
    green: int
    blue: int

    def describe(self) -> str:
        return f"light {self.index} -> ({self.red},{self.green},{self.blue})"


@dataclass(frozen=True)
class SoundEvent:
    url: str

    def describe(self) -> str:
        return f"sound {self.url}"


Effect = LightEvent | SoundEvent


class Effects(Protocol):
    """The bridges (lights, sound) as a run sees them. Arguments arrive already validated:
    index within the lights, colours 0..255, the URL on the allow-list."""

    def light(self, index: int, red: int, green: int, blue: int) -> None: ...

    def sound(self, url: str) -> None: ...


class RecordingEffects:
    """Records what would happen, and optionally shows it (``echo``) as it happens."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.events: list[Effect] = []
        self.echo = echo

    def light(self, index: int, red: int, green: int, blue: int) -> None:
        self._record(LightEvent(index, red, green, blue))

    def sound(self, url: str) -> None:
        self._record(SoundEvent(url))

    def _record(self, event: Effect) -> None:
        self.events.append(event)
        if self.echo is not None:
            self.echo(event.describe())

    def described(self) -> list[str]:
        return [event.describe() for event in self.events]


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """``host`` equals an entry, or ends with an entry that starts with a dot (subdomains)."""
    host = host.lower().rstrip(".")
    for allowed_entry in allowed:
        entry = allowed_entry.lower().rstrip(".")
        if entry.startswith("."):
            if host.endswith(entry) or host == entry[1:]:
                return True
        elif host == entry:
            return True
    return False


def check_sound_url(url: str, allowed: tuple[str, ...]) -> str:
    """``url`` if PLAYSOUND may fetch it, else ValueError saying why.

    http or https only, no user name or password, the default port, a host on the allow-list.
    """
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"URL longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("only http:// and https:// URLs can be played")
    if parts.username is not None or parts.password is not None:
        raise ValueError("URLs with a user name or password are not allowed")
    default_port = 80 if parts.scheme.lower() == "http" else 443
    if port is not None and port != default_port:
        raise ValueError("URLs with a port are not allowed")
    host = parts.hostname or ""
    if not host:
        raise ValueError("the URL names no host")
    if not host_allowed(host, allowed):
        shown = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"host {host} is not on the allow-list (allowed: {shown})")
    return url
