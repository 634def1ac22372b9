"""The example bot (examples/bot.py) as a user runs it: it greets, answers chat, echoes
audio, and leaves on request."""

import asyncio
import secrets
import subprocess
import sys
from pathlib import Path

import sealroom

BOT = Path(__file__).resolve().parents[1] / "examples" / "bot.py"


def test_the_bot_answers_chat_and_echoes_audio(relay):
    room_id = "bot-" + secrets.token_hex(4)
    room_secret = secrets.token_bytes(32)
    bot = subprocess.Popen(
        [sys.executable, str(BOT), "--relay", relay.address, "--pin", relay.pin,
         "--ticket-secret", relay.ticket_secret.decode(), "--room", room_id,
         "--room-secret", room_secret.hex()],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert bot.stdout.readline().startswith("bot joined as member")

        async def talk():
            client = sealroom.Client(relay.pin)
            room = await client.join(relay.address, "localhost", relay.ticket("alice", room_id), room_secret, room_id)
            chat = await room.publish_data(1)
            audio = await room.publish_audio(2)
            heard = []

            async def until(predicate):
                async for event in sealroom.events(room):
                    if event.is_frame():
                        heard.append((event.frame.kind, event.frame.payload))
                        if predicate(event.frame):
                            return
                raise AssertionError(f"session ended; heard {heard}")

            await asyncio.wait_for(until(lambda f: f.payload.startswith(b"hello alice")), 30)
            await chat.send(b"ping")
            await asyncio.wait_for(until(lambda f: f.payload.endswith(b"said: ping")), 30)
            # Audio is datagrams: send a few until one comes back.
            tone = b"\x01\x02 tone frame"

            async def echo():
                while True:
                    audio.send(tone)
                    await asyncio.sleep(0.05)

            sender = asyncio.ensure_future(echo())
            try:
                await asyncio.wait_for(
                    until(lambda f: f.kind == sealroom.MediaKind.AUDIO and f.payload == tone), 30
                )
            finally:
                sender.cancel()
            await chat.send(b"!leave")
            await room.leave()
            await client.close()

        asyncio.run(talk())
        code = bot.wait(timeout=30)
        output = bot.stdout.read()
        assert code == 0 and "bot left" in output, f"bot exited with {code}: {output}"
    finally:
        if bot.poll() is None:
            bot.kill()
