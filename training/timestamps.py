"""The one timestamp format of every record training writes (run.json, checkpoint meta, manifest 'created',
evaluate's 'date', the classifier's sidecar): UTC to the second, ISO 8601 with a Z."""

import datetime


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
