#!/usr/bin/env python3
"""Talks to SecureVault's /v1/chat/completions with OpenAI's own Python
library, as an existing OpenAI client would, and prints what it saw as JSON.

    python openai_client.py BASE_URL API_KEY MODEL

Plain and streamed completions, then the errors the library raises for a
model SecureVault does not serve and for a wrong key.
"""

import json
import sys

import openai

base_url, api_key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
messages = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "Say hello."},
]
out = {}

plain = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
out["plain"] = {
    "id": plain.id,
    "object": plain.object,
    "model": plain.model,
    "text": plain.choices[0].message.content,
    "role": plain.choices[0].message.role,
    "finish_reason": plain.choices[0].finish_reason,
    "usage": plain.usage.model_dump() if plain.usage else None,
}

pieces, ids, finish, usage, roles = [], set(), None, None, []
stream = client.chat.completions.create(
    model=model,
    messages=messages,
    max_completion_tokens=8,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    ids.add(chunk.id)
    if chunk.usage:
        usage = chunk.usage.model_dump()
    for choice in chunk.choices:
        if choice.delta.role:
            roles.append(choice.delta.role)
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
out["stream"] = {
    "ids": sorted(ids),
    "pieces": pieces,
    "roles": roles,
    "finish_reason": finish,
    "usage": usage,
}

try:
    client.chat.completions.create(model="not-served", messages=messages)
    out["bad_model"] = None
except openai.APIStatusError as e:
    out["bad_model"] = {"status": e.status_code, "body": e.body}

try:
    openai.OpenAI(base_url=base_url, api_key="sv_wrong", max_retries=0).chat.completions.create(
        model=model, messages=messages
    )
    out["bad_key"] = None
except openai.AuthenticationError as e:
    out["bad_key"] = {"status": e.status_code}

print(json.dumps(out))
