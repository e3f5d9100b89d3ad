"""One API call with an official SDK, reporting success or the SDK's error.

Usage: policy_call.py SPEC_JSON

SPEC: {"sdk": "openai"|"anthropic", "stream": bool, "model": str, "content": str}
and, optional (OpenAI): "max_tokens": n; "max_retries": n (default 0); "drop_after": n
(stream: close the stream after n content chunks, as a client that gives up);
"concurrency": n (make the same call n times at once, from n threads).

Configured only through the environment (HTTPS_PROXY, SSL_CERT_FILE, API keys). Prints
one JSON object: {"ok": true, "text": ..., "chunks": n} or
{"ok": false, "error_class": ..., "status": ..., "message": ...}; with "concurrency",
a JSON list of those.
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor


def call_openai(spec):
    import openai

    client = openai.OpenAI(max_retries=spec.get("max_retries", 0), timeout=60)
    messages = [{"role": "user", "content": spec["content"]}]
    extra = {"max_tokens": spec["max_tokens"]} if "max_tokens" in spec else {}
    try:
        if spec.get("stream"):
            text, chunks = "", 0
            stream = client.chat.completions.create(
                model=spec["model"], messages=messages, stream=True, **extra
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    chunks += 1
                    if chunks == spec.get("drop_after"):
                        stream.close()
                        break
            return {"ok": True, "text": text, "chunks": chunks}
        reply = client.chat.completions.create(model=spec["model"], messages=messages, **extra)
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
    call = call_openai if spec["sdk"] == "openai" else call_anthropic
    if "concurrency" in spec:
        n = spec["concurrency"]
        with ThreadPoolExecutor(max_workers=n) as pool:
            print(json.dumps(list(pool.map(call, [spec] * n))))
    else:
        print(json.dumps(call(spec)))


if __name__ == "__main__":
    main()
