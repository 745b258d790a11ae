"""A stand-in for the Azure CLI, for scripts that call `az`: it records every call and answers
from a small directory of Entra objects the way the real CLI does.

State lives in $FAKE_AZ_DIR/state.json; calls are appended to $FAKE_AZ_DIR/calls.jsonl.
`--query` is applied with jmespath and `-o tsv` printed as az prints it, so a script's queries
are checked against documents shaped like Microsoft Graph's. Anything it does not know is an
error (exit 2), never a silent success.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import jmespath

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
GRAPH = "https://graph.microsoft.com/"


class Unsupported(Exception):
    pass


def _options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    words: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i].startswith("--") or args[i] == "-o":
            options[args[i].lstrip("-")] = args[i + 1]
            i += 2
        else:
            words.append(args[i])
            i += 1
    return words, options


def _new_id(state: dict[str, Any]) -> str:
    state["serial"] = state.get("serial", 0) + 1
    return str(uuid.UUID(int=0xA5A5 << 64 | state["serial"]))


def _app(state: dict[str, Any], key: str) -> dict[str, Any]:
    for app in state["apps"]:
        if key in (app["appId"], app["id"]):
            return app
    raise Unsupported(f"ERROR: Resource '{key}' does not exist or one of its queried reference-property objects are not present.")


def _graph_patch(state: dict[str, Any], options: dict[str, str]) -> None:
    match = re.fullmatch(re.escape(GRAPH.rstrip("/")) + r"/v1\.0/applications/([0-9a-f-]+)", options.get("uri", ""))
    if options.get("method", "").upper() != "PATCH" or not match:
        raise Unsupported(f"az rest {options}")
    body = json.loads(options["body"])
    app = _app(state, match.group(1))
    api = body.pop("api", None)
    if api is not None:
        scopes = {s["id"] for s in api.get("oauth2PermissionScopes", app["api"]["oauth2PermissionScopes"])}
        for client in api.get("preAuthorizedApplications", []):
            unknown = set(client["delegatedPermissionIds"]) - scopes
            if unknown:  # Graph refuses a pre-authorization for a scope the app does not have
                raise Unsupported(f"Bad Request: permission {sorted(unknown)} does not exist on the application")
        app["api"] = {**app["api"], **api}
    app.update(body)


def _answer(state: dict[str, Any], words: list[str], options: dict[str, str]) -> Any:
    command = " ".join(words)
    if command == "account show":
        return {"tenantId": TENANT_ID, "name": "Contoso", "user": {"name": "admin@contoso.com"}}
    if command == "cloud show":
        return {"name": "AzureCloud", "endpoints": {"microsoftGraphResourceId": GRAPH}}
    if command == "ad app list":
        prefix = options.get("display-name", "")  # the real CLI filters with startswith()
        return [app for app in state["apps"] if app["displayName"].startswith(prefix)]
    if command == "ad app create":
        app = {
            "id": _new_id(state),
            "appId": _new_id(state),
            "displayName": options["display-name"],
            "signInAudience": options.get("sign-in-audience", "AzureADMyOrg"),
            "identifierUris": [],
            "api": {"requestedAccessTokenVersion": None, "oauth2PermissionScopes": [], "preAuthorizedApplications": []},
        }
        state["apps"].append(app)
        return app
    if command == "ad app show":
        return _app(state, options["id"])
    if command == "ad app update":
        _app(state, options["id"])["identifierUris"] = [options["identifier-uris"]]
        return None
    if command == "rest":
        _graph_patch(state, options)
        return None
    if command == "ad sp list":
        match = re.fullmatch(r"appId eq '([0-9a-f-]+)'", options.get("filter", ""))
        if not match:
            raise Unsupported(f"az ad sp list {options}")
        return [sp for sp in state["sps"] if sp["appId"] == match.group(1)]
    if command == "ad sp create":
        app = _app(state, options["id"])
        sp = {"id": _new_id(state), "appId": app["appId"], "displayName": app["displayName"]}
        state["sps"].append(sp)
        return sp
    raise Unsupported(f"az {command}")


def _tsv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "".join(_tsv(item) for item in value)
    if isinstance(value, dict):
        return "\t".join("" if v is None else str(v) for v in value.values()) + "\n"
    return f"{value}\n"


def main(args: list[str]) -> int:
    home = Path(os.environ["FAKE_AZ_DIR"])
    with open(home / "calls.jsonl", "a", encoding="utf-8") as calls:
        calls.write(json.dumps(args) + "\n")
    state_path = home / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"apps": [], "sps": []}
    words, options = _options(args)
    try:
        answer = _answer(state, words, options)
    except Unsupported as error:
        print(error, file=sys.stderr)
        return 2 if str(error).startswith("az ") else 1
    state_path.write_text(json.dumps(state, indent=1))
    if "query" in options:
        answer = jmespath.search(options["query"], answer)
    if answer is not None:
        sys.stdout.write(_tsv(answer) if options.get("o") == "tsv" else json.dumps(answer, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
