"""HTTP/1.1 over a bare asyncio socket, for clients no HTTP library would be: short, slow, oversized."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, base_url: str) -> "RawConnection":
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        """False once the server has closed its side (a refused request stops here)."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def response(self) -> RawResponse:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        else:
            body = b""
        return RawResponse(status, headers, body)

    async def closed_by_server(self) -> bool:
        """Waits for the server's end of the connection: True once it is closed (EOF or reset)."""
        try:
            return await self.reader.read(65536) == b""
        except (ConnectionError, OSError):
            return True

    async def rest(self) -> bytes:
        """Everything the server still sends, up to its close."""
        data = b""
        try:
            while chunk := await self.reader.read(65536):
                data += chunk
        except (ConnectionError, OSError):
            pass
        return data

    def close(self) -> None:
        self.writer.close()


def request_head(method: str, path: str, host: str, headers: dict[str, str] | list[tuple[str, str]] = ()) -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
