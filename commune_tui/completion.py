"""Recipient completion from `GET /v1/contacts`: the address being typed after the last comma."""

from __future__ import annotations

from textual.suggester import Suggester

from .client import ApiError, CommuneClient
from .formatting import named_address


class ContactSuggester(Suggester):
    """Suggests the rest of the address being typed (`right` accepts it), most recent contact
    first."""

    def __init__(self, client: CommuneClient) -> None:
        super().__init__(use_cache=True, case_sensitive=True)  # matched without case below
        self.client = client

    async def get_suggestion(self, value: str) -> str | None:
        typed = value.rpartition(",")[2]
        typed = typed.lstrip()
        if not typed or "<" in typed:
            return None
        try:
            contacts = await self.client.list_contacts(typed, limit=10)
        except ApiError:
            return None
        prefix = value[: len(value) - len(typed)]
        lowered = typed.lower()
        for contact in contacts:
            if contact.address.lower().startswith(lowered):
                return prefix + contact.address
            if contact.name and contact.name.lower().startswith(lowered):
                return prefix + named_address(contact.address, contact.name)
        return None
