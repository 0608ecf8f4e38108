"""Production's replicas by address: what CD reads each replica's canary figures from, and
where the canary drill sets its fault, so that every replica, not one, is asked."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from level2_cicd.settings import CicdSettings


def replica_urls(settings: CicdSettings) -> list[str]:
    """Every production replica's URL: each address L2_PRODUCTION_REPLICAS resolves to (the
    stack's network alias, a headless Service on Kubernetes: replicas without a model too,
    so a canary waits for them), at the production URL's port; without it, the production
    URL alone (one replica)."""
    if not settings.production_replicas:
        return [settings.production_url]
    port = urlsplit(settings.production_url).port or 80
    found = socket.getaddrinfo(settings.production_replicas, port, type=socket.SOCK_STREAM)
    hosts = sorted({f"[{a[4][0]}]" if a[0] == socket.AF_INET6 else a[4][0] for a in found})
    return [f"http://{host}:{port}" for host in hosts]
