"""Webhooks: subscriptions and a job's ``webhook_url`` (subscriptions.py), the SSRF guard
(ssrf.py), the outbox that turns a job's events into deliveries after its commit
(outbox.py), and the worker's signed attempts (delivery.py, http.py) with their retry policy
(policy.py)."""
