"""Opens wss://api.openai.com/v1/realtime with the `websockets` library through HTTPS_PROXY.

websockets >= 15 reads the proxy from the environment (proxy=True is the default) and its
default TLS context honours SSL_CERT_FILE; it offers permessage-deflate by default. Sends
a Realtime item carrying a secret (refused), one carrying a card number (the fake echoes
what it received), and a binary message (which Outpost cannot inspect). Prints one JSON
object with what came back and the extensions the handshake negotiated.
"""

import asyncio
import base64
import json
import os

import websockets

URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
BINARY = b"\x00\x01binary\xfe\xff"


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


async def main() -> None:
    headers = {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}
    async with websockets.connect(URL, additional_headers=headers, open_timeout=30) as ws:
        greeting = await asyncio.wait_for(ws.recv(), 30)
        await ws.send(item("my key is AKIAQWERTYUIOPASDFGH"))
        secret_reply = await asyncio.wait_for(ws.recv(), 30)
        await ws.send(item("card 4111 1111 1111 1111"))
        card_echo = await asyncio.wait_for(ws.recv(), 30)
        await ws.send(BINARY)
        binary_reply = await asyncio.wait_for(ws.recv(), 30)
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
    print(
        json.dumps(
            {
                "websockets_version": websockets.__version__,
                "greeting": greeting,
                "secret_reply": json.loads(secret_reply),
                "card_echo": json.loads(card_echo),
                "binary_reply": binary_reply
                if isinstance(binary_reply, str)
                else base64.b64encode(binary_reply).decode(),
                "extensions": extensions,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
