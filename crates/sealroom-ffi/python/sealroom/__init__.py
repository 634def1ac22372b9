"""sealroom: end-to-end encrypted real-time rooms.

The classes come from the Rust library through UniFFI (``sealroom._native``): ``Client``,
``Room``, the tracks, ``Event`` and its variants, the sealing classes (``KeySchedule``,
``Sealer``, ``Opener``, ``KeyContext``), ``mint_ticket`` and the typed errors. Every
network call is a coroutine. This module adds asyncio conveniences on top.

    import asyncio, sealroom

    async def main():
        client = sealroom.Client(pin_sha256)          # or None for the system trust store
        room = await client.join("127.0.0.1:4433", "localhost", ticket, room_secret, None)
        chat = await room.publish_data(1)
        await chat.send(b"hello")
        async for event in sealroom.events(room):
            if event.is_frame():
                print(event.frame.sender, event.frame.payload)

    asyncio.run(main())
"""

import atexit
from typing import AsyncIterator

from ._native import *  # noqa: F401,F403  (the generated API, with its own __all__)
from ._native import Event, Room, shutdown
from ._native.sealroom import __all__ as _native_all

# Stop the library's threads before the interpreter tears itself down: a thread that
# completes a future while Python finalizes would make the process abort.
atexit.register(shutdown)

#: The cipher suite sealroom uses on the wire (AES_128_GCM_SHA256_128, RFC 9605).
DEFAULT_SUITE = 4
#: Length of a room secret in bytes.
ROOM_SECRET_LEN = 32


async def events(room: Room, batch: int = 64) -> AsyncIterator[Event]:
    """Every event of ``room`` until the session ends (after ``Event.DISCONNECTED``).

    Takes up to ``batch`` queued events per crossing into Rust, so a busy room costs
    fewer round trips. Drain it steadily: the queue is bounded, and a full queue makes the
    client stop reading from the relay.
    """
    while True:
        received = await room.next_events(batch)
        if not received:
            return
        for event in received:
            yield event


__all__ = list(_native_all) + ["DEFAULT_SUITE", "ROOM_SECRET_LEN", "events"]
