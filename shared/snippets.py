"""Client set-up for a gateway server protected by a subscription key, for the MCP
clients users run: VS Code, Claude Code, Cursor and the MCP Inspector.

None of them writes the key into a file: VS Code asks for it once and keeps it in its
secret storage (an `inputs` entry with `password: true`); the others read it from an
environment variable when they connect. The demo prints these, and the docs show them.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

KEY_HEADER = "Ocp-Apim-Subscription-Key"
KEY_VARIABLE = "MCP_GATEWAY_KEY"
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


@dataclass(frozen=True)
class ClientSetup:
    """One server, as a client is told about it."""

    name: str
    url: str
    header: str = KEY_HEADER
    variable: str = KEY_VARIABLE

    def vscode(self) -> str:
        """`.vscode/mcp.json`: VS Code prompts for the key once and stores it as a secret."""
        input_id = f"{self.name}-key"
        document = {
            "inputs": [
                {"type": "promptString", "id": input_id, "description": f"Subscription key for {self.url}", "password": True}
            ],
            "servers": {self.name: {"type": "http", "url": self.url, "headers": {self.header: f"${{input:{input_id}}}"}}},
        }
        return json.dumps(document, indent=2)

    def claude_code(self) -> str:
        """A project's `.mcp.json` for Claude Code, which expands `${VAR}` when it connects."""
        document = {"mcpServers": {self.name: {"type": "http", "url": self.url, "headers": {self.header: f"${{{self.variable}}}"}}}}
        return json.dumps(document, indent=2)

    def claude_code_command(self) -> str:
        """The same with `claude mcp add` (the shell expands the variable once, at add time)."""
        return (
            f"claude mcp add --transport http {shlex.quote(self.name)} {shlex.quote(self.url)} "
            f'--header "{self.header}: ${self.variable}"'
        )

    def cursor(self) -> str:
        """`.cursor/mcp.json`, where `${env:VAR}` is read from the environment."""
        document = {"mcpServers": {self.name: {"url": self.url, "headers": {self.header: f"${{env:{self.variable}}}"}}}}
        return json.dumps(document, indent=2)

    def inspector_command(self) -> str:
        """The MCP Inspector's command line, listing the server's tools."""
        return (
            f"npx {INSPECTOR} --cli {shlex.quote(self.url)} --transport http --method tools/list "
            f'--header "{self.header}: ${self.variable}"'
        )

    def all(self, key: str | None = None) -> str:
        """Every snippet, as the demo prints them."""
        export = f"export {self.variable}={shlex.quote(key)}" if key else f"export {self.variable}=<your key>"
        return "\n".join(
            [
                f"The key is read from ${self.variable} (VS Code asks for it instead):\n\n    {export}\n",
                "VS Code (.vscode/mcp.json):\n" + self.vscode() + "\n",
                "Claude Code (.mcp.json):\n" + self.claude_code(),
                "  or: " + self.claude_code_command() + "\n",
                "Cursor (.cursor/mcp.json):\n" + self.cursor() + "\n",
                "MCP Inspector:\n    " + self.inspector_command(),
            ]
        )
