"""A Synaccess netBooter-style telnet PDU (NP-05B and friends), simulated.

What a client sees (docs/power.md, "synaccess"), quirks included:

- on connect: telnet option negotiation (``IAC WILL ECHO``, ``IAC WILL SUPPRESS-GO-AHEAD``),
  the banner ``Synaccess Inc. Telnet Session V6.2.``, then ``User ID: `` and ``Password: ``
  (the password is not echoed; everything else is, character by character);
- a wrong login prints ``Login Failed.`` and closes the connection;
- after login the prompt is ``>``; lines end in CR, CR LF or CR NUL;
- ``pshow``: a table of ``Port | Name | Status`` with ``ON``/``OFF`` per outlet;
- ``pset <outlet> 0|1``: switch one outlet; ``ps 0|1``: all outlets;
- ``logout`` (or ``exit``) ends the session; anything else answers ``Invalid command``.
- after a switching command the unit is busy for ``busy_s`` and *drops* what arrives meanwhile,
  printing the prompt only once it is ready again: a client must wait for the prompt.

``Faults`` make it hang after the banner, refuse every login, or stick an outlet's relay.
"""

from __future__ import annotations

import asyncio
import hmac

from bramble.sim.power import Faults, Outlets, ThreadedSim

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ECHO, SGA = 1, 3
BANNER = b"\r\nSynaccess Inc. Telnet Session V6.2.\r\n"
MAX_LINE = 128


class SynaccessSim(ThreadedSim):
    """``SynaccessSim(Outlets(5), user="admin", password="pw").start()`` -> port."""

    def __init__(  # noqa: PLR0917 - keyword use is the norm; positional kept for the CLI
        self,
        outlets: Outlets,
        user: str = "admin",
        password: str = "admin",  # noqa: S107 - the factory default of these units
        host: str = "127.0.0.1",
        port: int = 0,
        busy_s: float = 0.05,
    ) -> None:
        super().__init__(host, port)
        self.outlets = outlets
        self.user = user
        self.password = password
        self.busy_s = busy_s
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        #: Commands executed, in order (tests check that dropped input really was dropped).
        self.commands: list[str] = []

    @property
    def faults(self) -> Faults:
        return self.outlets.faults

    async def _serve(self) -> int:
        self._server = await asyncio.start_server(self._session, self.host, self.port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        lines: list[_LineReader] = []
        try:
            _send(writer, bytes([IAC, WILL, ECHO, IAC, WILL, SGA]) + BANNER)
            await writer.drain()
            if self.faults.hang:
                await asyncio.Event().wait()
            line = _LineReader(reader, writer)
            lines.append(line)
            _send(writer, b"User ID: ")
            user = await line.read(echo=True)
            _send(writer, b"Password: ")
            password = await line.read(echo=False)
            ok = hmac.compare_digest(user.encode(), self.user.encode()) and hmac.compare_digest(
                password.encode(), self.password.encode()
            )
            if self.faults.refuse_auth or not ok:
                _send(writer, b"\r\nLogin Failed.\r\n")
                await writer.drain()
                return
            _send(writer, b"\r\n>")
            while True:
                command = (await line.read(echo=True)).strip()
                if command.lower() in ("logout", "exit", "quit"):
                    _send(writer, b"\r\nLogged out.\r\n")
                    await writer.drain()
                    return
                answer, busy = self._run(command)
                _send(writer, answer)
                await writer.drain()
                if busy:
                    line.busy = True
                    await asyncio.sleep(self.busy_s)
                    line.busy = False
                _send(writer, b"\r\n>")
        except (ConnectionError, asyncio.IncompleteReadError, EOFError):
            return
        finally:
            for reader_of_lines in lines:
                reader_of_lines.close()
            self._writers.discard(writer)
            writer.close()

    def _run(self, command: str) -> tuple[bytes, bool]:  # noqa: PLR0911 - one per command
        """(what the unit prints, whether it is busy afterwards) for one command line."""
        if not command:
            return b"", False
        self.commands.append(command)
        words = command.split()
        verb = words[0].lower()
        if verb == "pshow" and len(words) == 1:
            return self._table(), False
        if verb == "pset" and len(words) == 3 and words[2] in ("0", "1"):
            if not words[1].isdigit() or not 1 <= int(words[1]) <= self.outlets.count:
                return b"\r\nInvalid outlet", False
            self.outlets.set(int(words[1]), words[2] == "1")
            return b"", True
        if verb == "ps" and len(words) == 2 and words[1] in ("0", "1"):
            for outlet in range(1, self.outlets.count + 1):
                self.outlets.set(outlet, words[1] == "1")
            return b"", True
        if verb in ("help", "?"):
            return b"\r\npset <n> <0|1>  pshow  ps <0|1>  logout", False
        return b"\r\nInvalid command", False

    def _table(self) -> bytes:
        rows = ["", "", "Port | Name       |Status"]
        for outlet, on in self.outlets.snapshot().items():
            rows.append(f"{outlet:>4} | {'Outlet' + str(outlet):>10} |{'ON ' if on else 'OFF':>6}|")
        return "\r\n".join(rows).encode()


def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write unless the client is gone (a unit does not complain about a closed session)."""
    if not writer.is_closing():
        writer.write(data)


class _LineReader:
    """Reads CR-terminated lines from a telnet client, skipping option negotiation.

    A pump task moves bytes from the socket into a queue as they arrive; while ``busy`` they
    are dropped, as the unit's serial buffer drops them.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.busy = False
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._pump_task = asyncio.create_task(self._pump(reader))

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(256)
            if not data:
                self._queue.put_nowait(-1)
                return
            if not self.busy:
                for byte in data:
                    self._queue.put_nowait(byte)

    def close(self) -> None:
        self._pump_task.cancel()

    async def _byte(self) -> int:
        byte = await self._queue.get()
        if byte < 0:
            raise EOFError
        return byte

    async def read(self, *, echo: bool) -> str:  # noqa: PLR0912 - one branch per byte kind
        line = bytearray()
        while True:
            byte = await self._byte()
            if byte == IAC:
                command = await self._byte()
                if command in (DO, DONT, WILL, WONT):
                    await self._byte()
                elif command == SB:
                    for _ in range(64):  # bounded: skip a subnegotiation up to IAC SE
                        if await self._byte() == IAC and await self._byte() == SE:
                            break
                continue
            if byte in (0, 10) and not line:
                continue  # the NUL or LF after a CR that ended the previous line
            if byte == 13:
                if echo:
                    _send(self.writer, b"\r\n")
                return line.decode("ascii", "replace")
            if byte in (8, 127):
                if line:
                    line.pop()
                continue
            if len(line) < MAX_LINE:
                line.append(byte)
                if echo:
                    _send(self.writer, bytes([byte]))
