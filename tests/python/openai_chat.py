"""Calls the OpenAI chat completions API with the official `openai` SDK.

Usage: openai_chat.py plain|stream

Configured only through the environment (HTTPS_PROXY, SSL_CERT_FILE, OPENAI_API_KEY), as an
employee's tool would be. Prints one JSON object: the reply, and for streams every content
chunk with its arrival time (seconds, monotonic) so the Rust test can check streaming.
"""

import json
import sys
import time

import openai
from openai import OpenAI

MESSAGES = [{"role": "user", "content": "Say hello to the outpost test."}]


def main() -> None:
    mode = sys.argv[1]
    # No retries: a failure must show up as a failure, not as a slow success.
    client = OpenAI(max_retries=0, timeout=60)
    result = {"sdk_version": openai.__version__}
    if mode == "plain":
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        result.update(
            id=reply.id,
            model=reply.model,
            content=reply.choices[0].message.content,
            usage=reply.usage.model_dump() if reply.usage else None,
        )
    elif mode == "stream":
        chunks = []
        usage = None
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            now = time.monotonic()
            if chunk.choices and chunk.choices[0].delta.content:
                chunks.append({"t": now, "text": chunk.choices[0].delta.content})
            if getattr(chunk, "usage", None):
                usage = chunk.usage.model_dump()
        result.update(chunks=chunks, usage=usage)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
