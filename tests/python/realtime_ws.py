"""Opens wss://api.openai.com/v1/realtime with the `websockets` library through HTTPS_PROXY.

websockets >= 15 reads the proxy from the environment (proxy=True is the default) and its
default TLS context honours SSL_CERT_FILE. Prints one JSON object with the greeting the
server sent and the echoes of a text and a binary message.
"""

import asyncio
import base64
import json
import os

import websockets

URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
BINARY = b"\x00\x01binary\xfe\xff"


async def main() -> None:
    headers = {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}
    async with websockets.connect(URL, additional_headers=headers, open_timeout=30) as ws:
        greeting = await asyncio.wait_for(ws.recv(), 30)
        await ws.send("hello from python")
        text_echo = await asyncio.wait_for(ws.recv(), 30)
        await ws.send(BINARY)
        binary_echo = await asyncio.wait_for(ws.recv(), 30)
    print(
        json.dumps(
            {
                "websockets_version": websockets.__version__,
                "greeting": greeting,
                "text_echo": text_echo,
                "binary_echo_b64": base64.b64encode(binary_echo).decode()
                if isinstance(binary_echo, bytes)
                else None,
                "binary_sent_b64": base64.b64encode(BINARY).decode(),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
