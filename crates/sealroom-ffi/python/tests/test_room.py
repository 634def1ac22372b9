"""Python members in rooms of a real relay (the `sealroom` binary): with a Rust member,
with a member holding another secret, with refused tickets, and joining and leaving many
times without growing."""

import asyncio
import os
import re
import secrets
import subprocess

import pytest

import sealroom
from conftest import binary

FRAMES = 30


async def wait_for(predicate, room, timeout=30):
    """Read events until `predicate(event)` is true; returns the events read."""
    seen = []

    async def read():
        async for event in sealroom.events(room):
            seen.append(event)
            if predicate(event):
                return
        raise AssertionError(f"the session ended first: {seen[-3:]}")

    await asyncio.wait_for(read(), timeout)
    return seen


def test_python_and_rust_members_exchange_audio_video_and_chat_both_ways(relay):
    room_id = "py-rust-" + secrets.token_hex(4)
    secret = secrets.token_bytes(32)
    peer = subprocess.Popen(
        [binary("SEALROOM_RUST_PEER", "target/debug/examples/rust_peer"),
         relay.address, relay.pin, relay.ticket("rust", room_id), str(FRAMES)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "SEALROOM_ROOM_SECRET": secret.hex()},
    )
    try:
        assert peer.stdout.readline().startswith("joined "), "the Rust member did not join"

        async def python_member():
            client = sealroom.Client(relay.pin)
            room = await client.join(relay.address, "localhost", relay.ticket("python", room_id), secret, room_id)
            audio = await room.publish_audio(1)
            video = await room.publish_video(2)
            chat = await room.publish_data(3)
            for i in range(FRAMES):
                audio.send(f"python audio {i}".encode())
                video.send(f"python video {i}".encode(), i % 10 == 0)
                await chat.send(f"python chat {i}".encode())
                await asyncio.sleep(0.005)
            await chat.send(b"bye")

            received = {sealroom.MediaKind.AUDIO: [], sealroom.MediaKind.VIDEO: [], sealroom.MediaKind.DATA: []}
            unopened = []

            def record(event):
                if event.is_frame():
                    frame = event.frame
                    if frame.payload == b"bye":
                        return True
                    received[frame.kind].append(frame.payload.decode())
                elif event.is_could_not_open():
                    unopened.append(event)
                return False

            await wait_for(record, room, timeout=60)
            stats = room.stats()
            await room.leave()
            await client.close()
            return received, unopened, stats

        received, unopened, stats = asyncio.run(python_member())
        summary = peer.stdout.readline()
        assert peer.wait(timeout=60) == 0
    finally:
        if peer.poll() is None:
            peer.kill()

    # Python received the Rust member's frames, every one opened and as sent.
    assert unopened == [] and stats.open_failures == 0
    assert received[sealroom.MediaKind.DATA] == [f"rust chat {i}" for i in range(FRAMES)]
    # Audio travels as datagrams, which the transport may drop, and a video group still
    # queued when a newer one starts is reset (real-time media drops stale frames rather
    # than queue them): what arrives is authentic and in order.
    for kind in (sealroom.MediaKind.AUDIO, sealroom.MediaKind.VIDEO):
        name = "audio" if kind == sealroom.MediaKind.AUDIO else "video"
        expected = [f"rust {name} {i}" for i in range(FRAMES)]
        got = received[kind]
        assert got, f"no {name} from the Rust member"
        assert got == [e for e in expected if e in got], f"{name} out of order: {got}"

    # The Rust member received the Python member's frames, every one opened.
    fields = dict(re.findall(r"(\w+)=(\S+)", summary))
    assert fields.get("open_failures") == "0", summary
    assert fields.get("bad_payloads") == "0", summary
    assert fields.get("bye") == "true", summary
    assert int(fields["chat"]) == FRAMES, summary
    assert int(fields["video"]) > 0 and int(fields["audio"]) > 0, summary


def test_a_member_with_another_secret_gets_could_not_open_events(relay):
    room_id = "wrong-secret-" + secrets.token_hex(4)

    async def run():
        client = sealroom.Client(relay.pin)
        alice = await client.join(relay.address, "localhost", relay.ticket("alice", room_id), secrets.token_bytes(32), None)
        mallory = await client.join(relay.address, "localhost", relay.ticket("mallory", room_id), secrets.token_bytes(32), None)
        await wait_for(lambda e: e.is_member_joined(), alice)
        chat = await alice.publish_data(1)
        audio = await alice.publish_audio(2)
        for i in range(5):
            audio.send(b"sealed for alice's room only %d" % i)
            await chat.send(b"secret %d" % i)
        seen = await wait_for(
            lambda e: e.is_could_not_open() and e.kind == sealroom.MediaKind.DATA, mallory
        )
        stats = mallory.stats()
        alice_id = alice.member_id()
        await alice.leave()
        # Alice is gone from the roster, but frames of hers still in flight keep her name.
        await wait_for(lambda e: e.is_member_left() and e.member == alice_id, mallory)
        departed = (mallory.user_of(alice_id), [m.id for m in mallory.members()])
        await mallory.leave()
        await client.close()
        return seen, stats, departed

    seen, stats, departed = asyncio.run(run())
    assert departed == ("alice", []), departed
    assert not [e for e in seen if e.is_frame()], "nothing opens with the wrong secret"
    failures = [e for e in seen if e.is_could_not_open()]
    assert failures and all(e.reason == sealroom.OpenFailure.AUTHENTICATION_FAILED for e in failures)
    assert stats.open_failures >= len(failures) and stats.frames_opened == 0


def test_a_refused_ticket_raises_the_typed_error(relay):
    async def join(ticket, room=None):
        client = sealroom.Client(relay.pin)
        try:
            await client.join(relay.address, "localhost", ticket, bytes(32), room)
        finally:
            await client.close()

    forged = relay.ticket("eve", "r", secret=b"not the app's secret, but long enough")
    with pytest.raises(sealroom.JoinError.Refused) as refused:
        asyncio.run(join(forged))
    assert refused.value.code == sealroom.RefusalCode.BAD_SIGNATURE

    with pytest.raises(sealroom.JoinError.Refused) as refused:
        asyncio.run(join(relay.ticket("eve", "one-room"), room="another-room"))
    assert refused.value.code == sealroom.RefusalCode.WRONG_ROOM

    with pytest.raises(sealroom.JoinError.InvalidSecret):
        asyncio.run(sealroom.Client(relay.pin).join(relay.address, "localhost", forged, bytes(5), None))
    with pytest.raises(sealroom.ClientError.InvalidPin):
        sealroom.Client("not a pin")


class Tickets(sealroom.TicketProvider):
    def __init__(self, relay, fail=False):
        self.relay, self.fail, self.requests = relay, fail, []

    def ticket(self, request):
        self.requests.append(request)
        if self.fail:
            raise sealroom.TicketProviderError.Failed("the backend is down")
        return self.relay.ticket("provided", "provider-room")


def test_a_ticket_provider_is_asked_for_the_join_and_its_failure_is_typed(relay):
    async def join(provider):
        client = sealroom.Client(relay.pin)
        try:
            room = await client.join_with_provider(relay.address, "localhost", provider, bytes(32), None)
            member = room.member_id()
            await room.leave()
            return member
        finally:
            await client.close()

    tickets = Tickets(relay)
    assert asyncio.run(join(tickets)) > 0
    assert [r.reason for r in tickets.requests] == [sealroom.TicketReason.JOIN]

    with pytest.raises(sealroom.JoinError.Ticket) as failed:
        asyncio.run(join(Tickets(relay, fail=True)))
    assert "the backend is down" in str(failed.value)


def test_join_any_passes_over_a_node_that_does_not_answer(relay):
    """A cluster's list of nodes: the first is down, the member joins at the next."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % probe.getsockname()[1]

    async def join(relays):
        client = sealroom.Client(relay.pin)
        try:
            room = await client.join_any(relays, "localhost", Tickets(relay), bytes(32), None)
            member = room.member_id()
            await room.leave()
            return member
        finally:
            await client.close()

    assert asyncio.run(join([dead, relay.address])) > 0
    with pytest.raises(sealroom.JoinError.InvalidAddress):
        asyncio.run(join([]))
    with pytest.raises(sealroom.JoinError.InvalidAddress):
        asyncio.run(join([relay.address, "no port here"]))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_joining_and_leaving_many_times_keeps_memory_flat(relay):
    async def cycles(client, start, count):
        # A user of its own per join: the relay rate-limits one user's joins.
        for i in range(count):
            room = await client.join(relay.address, "localhost", relay.ticket(f"looper-{start + i}", "loop-room"), bytes(32), None)
            chat = await room.publish_data(1)
            audio = await room.publish_audio(2)
            await chat.send(b"x" * 1000)
            audio.send(b"y" * 100)
            await room.leave()
            while await room.next_event() is not None:
                pass
            del chat, audio, room

    async def run():
        client = sealroom.Client(relay.pin)
        await cycles(client, 0, 20)  # warm up: allocator pools, the runtime's threads
        before = rss_bytes()
        await cycles(client, 20, 100)
        after = rss_bytes()
        await client.close()
        return before, after

    before, after = asyncio.run(run())
    growth = after - before
    print(f"RSS {before / 2**20:.1f} MiB after 20 joins, {after / 2**20:.1f} MiB after 100 more")
    # A leak of a room's state (keys, queues, tasks: tens of kilobytes) per join would
    # add several megabytes over 100 joins.
    assert growth < 3 * 1024 * 1024, f"RSS grew by {growth / 1024:.0f} KiB over 100 joins"
