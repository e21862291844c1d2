"""Commune's terminal mail client."""
