#!/usr/bin/env python3
"""The ceiling of an SMTP server: how many emails per second it takes from
clients that do nothing else.

`email-benchmark.sh` runs it after SecureVault's own measurement, against the
same mailpit, so SecureVault's delivered/s can be read as a share of what that
server takes on this machine. Each of CONNECTIONS threads opens one SMTP
connection and sends, on it, the same small text email SecureVault sends
(one recipient, a distinct subject) as fast as the server answers, for
SECONDS. Python's smtplib holds the GIL between socket calls, so the figure
is a floor of the ceiling; the threads wait on the socket most of the time.

Prints one line: "<sent> <seconds>". Any refused message stops the run with
an error, so the count is of emails the server accepted.

Usage: smtp_ceiling.py HOST PORT CONNECTIONS SECONDS
"""

import smtplib
import sys
import threading
import time
from email.message import EmailMessage


def main() -> None:
    host, port, connections, seconds = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    counts = [0] * connections
    errors: list[str] = []
    start = time.monotonic()
    stop_at = start + seconds

    def client(index: int) -> None:
        try:
            with smtplib.SMTP(host, port, timeout=30) as smtp:
                while time.monotonic() < stop_at:
                    message = EmailMessage()
                    message["From"] = "SecureVault <noreply@securevault.test>"
                    message["To"] = "bench@example.com"
                    message["Subject"] = f"direct {index}-{counts[index]}"
                    message.set_content("bench")
                    smtp.send_message(message)
                    counts[index] += 1
        except (OSError, smtplib.SMTPException) as error:
            errors.append(f"connection {index}: {error}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    if errors:
        sys.exit("smtp_ceiling: " + "; ".join(errors))
    print(sum(counts), f"{elapsed:.2f}")


if __name__ == "__main__":
    main()
