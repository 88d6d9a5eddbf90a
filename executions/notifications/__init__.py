"""Notifications: the fan-out from the audit records into the outbox, the delivery of the
outbox (webhook, Slack, email) with retries, signatures and the SSRF guard, and replay."""
