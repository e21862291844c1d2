"""Outgoing webhooks: payloads, signatures, target vetting and the delivery worker."""
