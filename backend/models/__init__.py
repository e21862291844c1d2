"""Wire models: request bodies (pydantic) and the response shapes of the API reference."""
