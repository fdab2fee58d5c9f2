"""Checks status callbacks with the `standardwebhooks` package (an implementation of the
Standard Webhooks specification independent of Herald's).

Reads one JSON object a line on stdin: {"secrets": ["whsec_..."], "headers": {...}, "body": "..."}
and writes one line per object: {"verified": [true|false per secret], "type": "..."|null,
"error": "..."|null}.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    item = json.loads(line)
    verified = []
    event_type = None
    error = None
    for secret in item["secrets"]:
        try:
            payload = Webhook(secret).verify(item["body"].encode(), item["headers"])
            verified.append(True)
            event_type = payload.get("type")
        except WebhookVerificationError as e:
            verified.append(False)
            error = str(e)
    print(json.dumps({"verified": verified, "type": event_type, "error": error}), flush=True)
