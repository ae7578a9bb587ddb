#!/usr/bin/env python3
"""Verifies every DKIM signature of one message with dkimpy, an independent
implementation, against the TXT records the data plane says to publish.

    python dkim-verify.py MESSAGE_FILE RECORDS_JSON

RECORDS_JSON maps a record name (`sel._domainkey.example.com`) to its TXT
value, as `GET /api/dkim` printed it: what a user would publish, handed to
dkimpy in place of a DNS lookup (the test checks signatures against the
records the data plane says to publish; a DNS server would add a resolver,
not a check). Prints one JSON object per signature,
in the message's order: {"selector", "domain", "algorithm", "verified",
"error"}.
"""

import json
import sys

import dkim


def main() -> None:
    message = open(sys.argv[1], "rb").read()
    records = json.loads(open(sys.argv[2]).read())

    def dns(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        value = records.get(name.rstrip("."))
        return value.encode() if value is not None else None

    verifier = dkim.DKIM(message)
    headers = [v for (k, v) in verifier.headers if k.lower() == b"dkim-signature"]
    results = []
    for index, raw in enumerate(headers):
        tags = dkim.util.parse_tag_value(raw)
        # dkimpy answers False for most failures and raises for some (a
        # body hash mismatch): both are a failed verification.
        try:
            ok, error = bool(verifier.verify(idx=index, dnsfunc=dns)), None
        except dkim.DKIMException as e:
            ok, error = False, str(e)
        results.append(
            {
                "selector": tags[b"s"].decode(),
                "domain": tags[b"d"].decode(),
                "algorithm": tags[b"a"].decode(),
                "verified": ok,
                "error": error,
            }
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
