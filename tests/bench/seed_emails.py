"""Fills a migrated SQLite store with N emails of the last 24 hours, as the
benchmarks that need a full outbox use it: 90 % sent, 5 % failed, 5 %
queued, 20,000 distinct recipients, the same rows for the same N (seeded).

    python3 tests/bench/seed_emails.py DATA_DIR/securevault.db 100000
"""
import json, random, sqlite3, sys, time, uuid
db, n = sys.argv[1], int(sys.argv[2])
now = int(time.time() * 1000)
rng = random.Random(7)
statuses = ["sent"] * 90 + ["failed"] * 5 + ["queued"] * 5
rows = []
for i in range(n):
    created = now - rng.randrange(24 * 3600 * 1000)
    status = rng.choice(statuses)
    to = [f"user{rng.randrange(20000)}@example.com"]
    rows.append((str(uuid.UUID(int=rng.getrandbits(128))), status, json.dumps({"to": to}),
                 f"Order {i} confirmation", "Thanks for your order.", created,
                 created + 900, created + 900 if status == "sent" else None,
                 json.dumps([{"at": created + 900, "outcome": "sent" if status == "sent" else "failed",
                              "answer": "250 2.0.0 Ok: queued" if status == "sent" else "SMTP 550: mailbox unavailable",
                              "duration_ms": 12}]),
                 1, "user:bench"))
con = sqlite3.connect(db, timeout=30)
con.executemany(
    "INSERT INTO emails (id, status, recipients, subject, body_text, created_at, updated_at, sent_at, "
    "attempt_log, attempts, created_by, next_attempt_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,0)", rows)
con.commit()
con.execute("ANALYZE")
con.close()
