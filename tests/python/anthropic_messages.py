"""Calls the Anthropic Messages API with the official `anthropic` SDK.

Usage: anthropic_messages.py plain|stream

Configured only through the environment (HTTPS_PROXY, SSL_CERT_FILE, ANTHROPIC_API_KEY).
Prints one JSON object: the reply, and for streams every text delta with its arrival time
(seconds, monotonic) plus the SDK's accumulated final message.
"""

import json
import sys
import time

import anthropic
from anthropic import Anthropic

MESSAGES = [{"role": "user", "content": "Say hello to the outpost test."}]
MODEL = "claude-sonnet-4-5"


def main() -> None:
    mode = sys.argv[1]
    client = Anthropic(max_retries=0, timeout=60)
    result = {"sdk_version": anthropic.__version__}
    if mode == "plain":
        reply = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        result.update(
            id=reply.id,
            model=reply.model,
            content=reply.content[0].text,
            stop_reason=reply.stop_reason,
            usage=reply.usage.model_dump(),
        )
    elif mode == "stream":
        chunks = []
        with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            for text in stream.text_stream:
                chunks.append({"t": time.monotonic(), "text": text})
            final = stream.get_final_message()
        result.update(
            chunks=chunks,
            final_text="".join(block.text for block in final.content if block.type == "text"),
            stop_reason=final.stop_reason,
            usage=final.usage.model_dump(),
        )
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
