"""Commune: a self-hosted email server for software agents and the people who run them."""

__version__ = "0.1.0"
