"""One API call with an official SDK, reporting success or the SDK's error.

Usage: policy_call.py SPEC_JSON

SPEC: {"sdk": "openai"|"anthropic", "stream": bool, "model": str, "content": str}

Configured only through the environment (HTTPS_PROXY, SSL_CERT_FILE, API keys). Prints
one JSON object: {"ok": true, "text": ..., "chunks": n} or
{"ok": false, "error_class": ..., "status": ..., "message": ...}.
"""

import json
import sys


def call_openai(spec):
    import openai

    client = openai.OpenAI(max_retries=0, timeout=60)
    messages = [{"role": "user", "content": spec["content"]}]
    try:
        if spec.get("stream"):
            text, chunks = "", 0
            stream = client.chat.completions.create(
                model=spec["model"], messages=messages, stream=True
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    chunks += 1
            return {"ok": True, "text": text, "chunks": chunks}
        reply = client.chat.completions.create(model=spec["model"], messages=messages)
        return {"ok": True, "text": reply.choices[0].message.content, "chunks": 1}
    except openai.APIStatusError as e:
        return {
            "ok": False,
            "error_class": type(e).__name__,
            "status": e.status_code,
            "message": str(e),
        }
    except openai.APIError as e:
        return {"ok": False, "error_class": type(e).__name__, "status": None, "message": str(e)}


def call_anthropic(spec):
    import anthropic

    client = anthropic.Anthropic(max_retries=0, timeout=60)
    messages = [{"role": "user", "content": spec["content"]}]
    try:
        if spec.get("stream"):
            text, chunks = "", 0
            with client.messages.stream(
                model=spec["model"], max_tokens=64, messages=messages
            ) as stream:
                for piece in stream.text_stream:
                    text += piece
                    chunks += 1
            return {"ok": True, "text": text, "chunks": chunks}
        reply = client.messages.create(model=spec["model"], max_tokens=64, messages=messages)
        return {"ok": True, "text": reply.content[0].text, "chunks": 1}
    except anthropic.APIStatusError as e:
        return {
            "ok": False,
            "error_class": type(e).__name__,
            "status": e.status_code,
            "message": str(e),
        }
    except anthropic.APIError as e:
        return {"ok": False, "error_class": type(e).__name__, "status": None, "message": str(e)}


def main():
    spec = json.loads(sys.argv[1])
    result = call_openai(spec) if spec["sdk"] == "openai" else call_anthropic(spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
