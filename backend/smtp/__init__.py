"""Inbound SMTP: the aiosmtpd listener and its group commit."""
