"""Outbound mail: recipient validation, hand-off to local inboxes or the outbound queue, and its workers."""
