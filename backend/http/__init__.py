"""HTTP/1.1 on plain asyncio: httptools parses, the protocol owns the connection, the app never sees a socket."""
