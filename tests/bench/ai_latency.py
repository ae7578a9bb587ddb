"""Latency of one chat request three ways, against one llama.cpp server:
directly, through SecureVault, and through LiteLLM's proxy. Used by
tests/bench/ai-benchmark.sh; prints one JSON object.

    python ai_latency.py DIRECT_URL SECUREVAULT_URL LITELLM_URL ROUNDS CONCURRENCY

Each round sends the same prompt to the three targets in turn (interleaved,
so a drift of the model server's speed affects all three alike, each first
in turn); medians are taken over the rounds. Then CONCURRENCY requests at once to each target,
four times over, counting failures.
"""

import asyncio
import json
import os
import statistics
import sys
import time

import httpx

# One prompt for every request: llama.cpp reuses the KV cache of the previous
# prompt, so varying it would favour whichever path happens to come second.
PROMPTS = ["Say hello in one word."]
MAX_TOKENS = 1  # the model's time is what all three share; keep it small
# LiteLLM's proxy wants its master key, SecureVault an API key of its own;
# llama.cpp's server ignores the header.
AUTH = {
    "direct": {},
    "securevault": {"Authorization": "Bearer " + os.environ["BENCH_SV_KEY"]},
    "litellm": {"Authorization": "Bearer " + os.environ["BENCH_API_KEY"]},
}


def body(kind, prompt):
    if kind == "securevault":
        return {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
    return {
        "model": "smollm2",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }


async def one(client, kind, url, prompt):
    start = time.perf_counter()
    r = await client.post(url, json=body(kind, prompt), headers=AUTH[kind])
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, r.status_code == 200


async def main():
    targets = {"direct": sys.argv[1], "securevault": sys.argv[2], "litellm": sys.argv[3]}
    rounds, concurrency = int(sys.argv[4]), int(sys.argv[5])
    times = {k: [] for k in targets}
    failures = {k: 0 for k in targets}
    async with httpx.AsyncClient(timeout=120) as client:
        for kind, url in targets.items():  # warm-up
            for p in PROMPTS:
                await one(client, kind, url, p)
        kinds = list(targets)
        for i in range(rounds):
            # A different path goes first each round.
            for kind in kinds[i % 3:] + kinds[:i % 3]:
                ms, ok = await one(client, kind, targets[kind], PROMPTS[i % len(PROMPTS)])
                times[kind].append(ms)
                failures[kind] += not ok
        concurrent = {}
        limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        for kind, url in targets.items():
            start = time.perf_counter()
            for _ in range(4):
                results = await asyncio.gather(
                    *(one(client, kind, url, PROMPTS[j % len(PROMPTS)]) for j in range(concurrency))
                )
                failures[kind] += sum(not ok for _, ok in results)
            concurrent[kind] = round((time.perf_counter() - start) * 1000 / 4, 1)
    median = {k: round(statistics.median(v), 2) for k, v in times.items()}
    print(json.dumps({
        "median_ms": median,
        "p90_ms": {k: round(statistics.quantiles(v, n=10)[-1], 2) for k, v in times.items()},
        "overhead_ms": {k: round(median[k] - median["direct"], 2) for k in ("securevault", "litellm")},
        "failures": failures,
        "batch_ms": concurrent,
        "rounds": rounds,
        "concurrency": concurrency,
    }))


asyncio.run(main())
