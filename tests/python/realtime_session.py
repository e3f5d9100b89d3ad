"""A Realtime text session with the `websockets` library through HTTPS_PROXY.

websockets >= 15 reads the proxy from the environment and its default TLS context honours
SSL_CERT_FILE; it offers permessage-deflate by default. The session: an instructions
update, a user item carrying a secret (Outpost refuses it), one carrying a card number,
a response, a binary message (which Outpost cannot inspect). Prints one JSON object with
every event the client received, and the extensions the handshake negotiated.
"""

import asyncio
import json
import os

import websockets

URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"


def item(text: str) -> str:
    return json.dumps(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        }
    )


async def until(ws, *types):
    """Events up to and including the first whose type is in `types`."""
    events = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), 30)
        event = json.loads(raw)
        events.append(event)
        if event.get("type") in types:
            return events


async def main() -> None:
    headers = {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}
    async with websockets.connect(URL, additional_headers=headers, open_timeout=30) as ws:
        events = await until(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"instructions": "Be brief."}}))
        events += await until(ws, "session.updated")
        await ws.send(item("my key is AKIAQWERTYUIOPASDFGH"))
        events += await until(ws, "error")
        await ws.send(item("card 4111 1111 1111 1111"))
        events += await until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create"}))
        events += await until(ws, "response.done")
        await ws.send(b"\x00\x01binary\xfe\xff")
        events += await until(ws, "error")
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
    print(
        json.dumps(
            {
                "websockets_version": websockets.__version__,
                "events": events,
                "extensions": extensions,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
