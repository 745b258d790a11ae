"""Real REST APIs for the `openapi` server kind: FastAPI apps whose OpenAPI 3.1 documents FastAPI writes.

`build_pet_shop()` has path, query, header and body parameters, `$ref` schemas (one
recursive), an enum, arrays, an error route, and routes that misbehave on purpose
(slow, endless, compressed). Every request that reaches it is recorded, raw, so a
test can see exactly what the gateway sent.

`build_conformance_api()` answers the official conformance suite's tool scenarios
(`test_simple_text`, `test_image_content`, ...) as plain REST operations.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import wave
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def wav_silence() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 80)
    return out.getvalue()


class Status(str, Enum):
    available = "available"
    pending = "pending"
    sold = "sold"


class Category(BaseModel):
    name: str
    parent: "Category | None" = None


class NewPet(BaseModel):
    name: str = Field(min_length=1, description="The pet's name.")
    status: Status = Status.available
    tags: list[str] = []
    category: Category | None = None


class Pet(NewPet):
    id: int


@dataclass
class Seen:
    """One request as it reached the API."""

    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]


@dataclass
class PetShop:
    app: FastAPI
    seen: list[Seen] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    """Routes whose client (the gateway) went away before they answered."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(Seen(scope["method"], scope["raw_path"], scope["query_string"], list(scope["headers"])))
        await self.app(scope, receive, send)

    def openapi(self) -> dict:
        return self.app.openapi()


def build_pet_shop() -> PetShop:
    app = FastAPI(title="Pet shop", version="1.0.0", description="A small REST API.")
    shop = PetShop(app)
    pets: dict[int, Pet] = {1: Pet(id=1, name="Rex", tags=["dog"], category=Category(name="dogs"))}

    @app.get("/pets", operation_id="listPets", tags=["pets"], summary="List pets")
    def list_pets(
        status: Status | None = None,
        tags: Annotated[list[str], Query(description="Pets with any of these tags.")] = [],  # noqa: B006
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> list[Pet]:
        found = [p for p in pets.values() if (status is None or p.status == status) and (not tags or set(tags) & set(p.tags))]
        return found[:limit]

    @app.post("/pets", operation_id="createPet", tags=["pets"], summary="Add a pet", status_code=201)
    def create_pet(pet: NewPet) -> Pet:
        created = Pet(id=max(pets, default=0) + 1, **pet.model_dump())
        pets[created.id] = created
        return created

    @app.get(
        "/pets/{pet_id}", operation_id="getPet", tags=["pets"], summary="Find a pet",
        description="One pet by its id.", responses={404: {"description": "No such pet"}},
    )
    def get_pet(pet_id: int, x_trace: Annotated[str | None, Header()] = None) -> Pet:
        if pet_id not in pets:
            raise HTTPException(404, detail=f"no pet {pet_id}")
        return pets[pet_id]

    @app.put("/pets/{pet_id}", operation_id="updatePet", tags=["pets"], summary="Replace a pet")
    def update_pet(pet_id: int, pet: NewPet) -> Pet:
        if pet_id not in pets:
            raise HTTPException(404, detail=f"no pet {pet_id}")
        pets[pet_id] = Pet(id=pet_id, **pet.model_dump())
        return pets[pet_id]

    @app.delete("/pets/{pet_id}", operation_id="deletePet", tags=["pets"], summary="Remove a pet", status_code=204)
    def delete_pet(pet_id: int) -> Response:
        pets.pop(pet_id, None)
        return Response(status_code=204)

    @app.get("/files/{name}", operation_id="getFile", tags=["files"], summary="A file by name")
    def get_file(name: str, request: Request) -> dict:
        return {"name": name, "raw_path": request.scope["raw_path"].decode(), "query": request.scope["query_string"].decode()}

    @app.get("/fail", operation_id="failAlways", tags=["errors"], summary="Always fails")
    def fail() -> JSONResponse:
        return JSONResponse({"error": "database on fire", "padding": "x" * 20000}, status_code=503)

    @app.get("/slow", operation_id="slow", tags=["misbehaving"], summary="Answers only after the client left")
    async def slow(request: Request) -> dict:
        while not await request.is_disconnected():
            await asyncio.sleep(0.02)  # poll interval of the fixture, not synchronisation
        shop.disconnects.append("slow")
        return {}

    @app.get("/endless", operation_id="endless", tags=["misbehaving"], summary="A body that never ends")
    async def endless(request: Request) -> StreamingResponse:
        async def forever():
            chunk = b"[" + b"1," * 32768
            while not await request.is_disconnected():
                yield chunk
            shop.disconnects.append("endless")

        return StreamingResponse(forever(), media_type="application/json")

    @app.get("/compressed", operation_id="compressed", tags=["misbehaving"], summary="gzip though not asked")
    def compressed() -> Response:
        return Response(gzip.compress(b'{"a": 1}'), media_type="application/json", headers={"content-encoding": "gzip"})

    @app.get("/picture", operation_id="picture", tags=["media"], summary="A picture",
             responses={200: {"content": {"image/png": {}}}})
    def picture() -> Response:
        return Response(PNG_1X1, media_type="image/png")

    @app.get("/lying/{pet_id}", operation_id="lyingGetPet", tags=["misbehaving"], summary="Not what it says",
             response_model=None, responses={200: {"model": Pet}})
    def lying(pet_id: int) -> JSONResponse:
        return JSONResponse({"id": "not a number", "name": "Rex"})

    @app.get("/moved", operation_id="moved", tags=["misbehaving"], summary="Redirects elsewhere")
    def moved() -> Response:
        return Response(status_code=302, headers={"location": "http://elsewhere.example/steal"})

    @app.post("/admin/reset", operation_id="resetEverything", tags=["admin"], summary="Delete every pet")
    def reset() -> dict:
        pets.clear()
        return {"reset": True}

    return shop


class address(BaseModel):  # noqa: N801 - the conformance suite looks for a $defs entry named "address"
    street: str
    city: str


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    address: address


def build_conformance_api() -> FastAPI:
    """The conformance suite's tool scenarios, as REST operations (operationIds are the tool names)."""
    app = FastAPI(title="Conformance REST API", version="1.0.0")

    @app.get("/text", operation_id="test_simple_text", summary="Returns simple text")
    def simple_text() -> Response:
        return Response("This is a simple text response for testing.", media_type="text/plain")

    @app.get("/image", operation_id="test_image_content", summary="Returns an image",
             responses={200: {"content": {"image/png": {}}}})
    def image() -> Response:
        return Response(PNG_1X1, media_type="image/png")

    @app.get("/audio", operation_id="test_audio_content", summary="Returns audio",
             responses={200: {"content": {"audio/wav": {}}}})
    def audio() -> Response:
        return Response(wav_silence(), media_type="audio/wav")

    @app.get("/resource", operation_id="test_embedded_resource", summary="Returns a file",
             responses={200: {"content": {"application/octet-stream": {}}}})
    def resource() -> Response:
        return Response(b"\x00\x01binary payload", media_type="application/octet-stream")

    @app.get("/error", operation_id="test_error_handling", summary="Always fails")
    def error() -> JSONResponse:
        return JSONResponse({"detail": "This tool intentionally returns an error for testing"}, status_code=500)

    @app.post("/register", operation_id="json_schema_2020_12_tool", summary="Takes a structured body")
    def register(registration: Registration) -> dict:
        return {"registered": registration.name}

    return app
