"""A sealroom bot: joins a room, greets members, answers chat messages and echoes audio.

Against a development relay (`sealroom relay` prints the pin and the ticket secret):

    python bot.py --relay 127.0.0.1:4433 --pin <cert-sha256> \\
        --ticket-secret <SEALROOM_TICKET_SECRET> --room demo --room-secret <64 hex digits>

With --ticket-secret the bot mints its own ticket (as an app backend would, with
sealroom.mint_ticket); give --ticket instead to use one minted elsewhere (`sealroom token`).
Every member must hold the same room secret: the relay never sees it. A chat message
"!leave" makes the bot leave.
"""

import argparse
import asyncio

import sealroom

CHAT_TRACK = 1
AUDIO_TRACK = 2


async def run(args: argparse.Namespace) -> None:
    ticket = args.ticket or sealroom.mint_ticket(
        app=args.app, user=args.user, room=args.room, kid=args.kid,
        secret=args.ticket_secret.encode(), ttl_secs=3600,
        grants=sealroom.Grants(publish_audio=True, publish_video=False, publish_data=True, subscribe=True),
    )
    client = sealroom.Client(args.pin)
    room = await client.join(args.relay, args.server_name, ticket, bytes.fromhex(args.room_secret), args.room)
    chat = await room.publish_data(CHAT_TRACK)
    audio = await room.publish_audio(AUDIO_TRACK)
    print(f"bot joined as member {room.member_id()}", flush=True)

    async for event in sealroom.events(room):
        if event.is_member_joined():
            await chat.send(f"hello {event.member.user}: I answer chat and echo your audio".encode())
        elif event.is_frame():
            frame = event.frame
            if frame.kind == sealroom.MediaKind.DATA:
                text = frame.payload.decode(errors="replace")
                if text == "!leave":
                    break
                await chat.send(f"member {frame.sender} said: {text}".encode())
            elif frame.kind == sealroom.MediaKind.AUDIO:
                try:
                    audio.send(frame.payload)
                except sealroom.PublishError.QueueFull:
                    pass  # real-time audio: drop a frame rather than fall behind
        elif event.is_could_not_open():
            print(f"a frame from member {event.sender} did not open ({event.reason}): "
                  "does it hold the same room secret?", flush=True)
        elif event.is_disconnected():
            print(f"session over: {event.reason}", flush=True)
    await room.leave()
    await client.close()
    print("bot left", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", default="127.0.0.1:4433", help="relay host:port")
    parser.add_argument("--server-name", default="localhost", help="relay TLS name")
    parser.add_argument("--pin", help="relay certificate sha256 (omit to use the system trust store)")
    parser.add_argument("--room", default="demo", help="room id")
    parser.add_argument("--room-secret", required=True, help="the room's 32-byte secret, 64 hex digits")
    parser.add_argument("--ticket", help="an entry ticket (otherwise minted with --ticket-secret)")
    parser.add_argument("--ticket-secret", help="the app's ticket secret, to mint a ticket")
    parser.add_argument("--app", default="dev")
    parser.add_argument("--kid", default="dev")
    parser.add_argument("--user", default="bot")
    args = parser.parse_args()
    if not args.ticket and not args.ticket_secret:
        parser.error("give --ticket, or --ticket-secret to mint one")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
