"""DMARC aggregate reports (RFC 7489 §7.2): receiving them at the domain's `rua` address and parsing them.

`parse` turns a report's bytes (gzip, zip or plain XML) into figures, refusing hostile input within
fixed bounds; `worker` parses report mail after it is stored (never on the SMTP path) and creates the
report inbox when the first report arrives for a verified domain.
"""
