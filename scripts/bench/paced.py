"""An open-loop load generator light enough to share the machine with the server it measures.

Half the saturating load is a few hundred to a thousand requests a second. httpx spends about a
millisecond of CPU on each, so at that rate the client takes a core of a 2-core machine and the
"half-load" server is saturated after all. Here each request is a pre-encoded HTTP/1.1 message
written on a kept-alive asyncio stream, and only the status line and the ``Server-Timing``
header of the answer are looked at: some tens of microseconds a request.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["PacedResult", "paced"]


@dataclass
class PacedResult:
    server_ms: list[float] = field(default_factory=list)  # Server-Timing of each 200
    sent: int = 0
    failed: int = 0  # not 200, or the connection broke

    @property
    def answered(self) -> int:
        return len(self.server_ms)


def _request(host: str, key: str, msisdn: str) -> bytes:
    body = json.dumps({"msisdn": msisdn, "channel": "store"}).encode()
    head = (
        f"POST /v1/decisions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, float | None]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    server_ms = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "server-timing" and "dur=" in value:
            server_ms = float(value.split("dur=", 1)[1].split(";", 1)[0].split(",", 1)[0])
    if length:
        await reader.readexactly(length)
    return status, server_ms


async def paced(
    host: str,
    port: int,
    key: str,
    numbers: Sequence[str],
    rate: float,
    duration: float,
    *,
    seed: int = 5,
    max_connections: int = 64,
) -> PacedResult:
    """Send ``rate`` decision requests a second for ``duration`` seconds, each at its due time
    whether or not the earlier ones have been answered (open loop), on up to
    ``max_connections`` kept-alive connections; a request finding all of them busy opens none
    and waits for one (counted in its latency on the client, not in the server's)."""
    rng = random.Random(seed)
    result = PacedResult()
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = 0
    everything: list[asyncio.StreamWriter] = []

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal opened
        if idle.empty() and opened < max_connections:
            opened += 1
            pair = await asyncio.open_connection(host, port)
            everything.append(pair[1])
            return pair
        return await idle.get()

    async def one(request: bytes) -> None:
        reader, writer = await connection()
        try:
            status, server_ms = await _exchange(reader, writer, request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.failed += 1
            writer.close()
            return  # this connection is not given back
        idle.put_nowait((reader, writer))
        if status == 200 and server_ms is not None:
            result.server_ms.append(server_ms)
        else:
            result.failed += 1

    requests = [_request(host, key, n) for n in numbers]
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < duration:
        due = int(elapsed * rate)
        while result.sent < due:
            tasks.append(asyncio.create_task(one(rng.choice(requests))))
            result.sent += 1
        await asyncio.sleep(0.0005)
    await asyncio.gather(*tasks)
    for writer in everything:
        writer.close()
    return result
