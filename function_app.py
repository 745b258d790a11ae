"""Azure Functions entry: one HTTP-stream function hands every request to the gateway.

The function's route is a catch-all, so the router in shared/app.py is the only router:
a route the gateway serves (protected resource metadata included) can never be missing
here. It takes the extension's FastAPI `Request` and returns a streaming response: the
classic `func.HttpRequest` and `AsgiFunctionApp` buffer whole bodies, which would break
SSE. Auth level is anonymous because the gateway does its own inbound auth per server
(function keys would be a second, weaker key scheme).
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, StreamingResponse

from shared.functions import FrontDoor

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
front_door = FrontDoor.from_environment()


@app.route(route="{*path}", methods=list(func.HttpMethod))
async def gateway(req: Request) -> StreamingResponse:
    """Every path and method: the gateway answers 404 and 405 itself."""
    return await front_door.handle(req)
