"""The MCP gateway: a secure, streaming front door for MCP servers on Azure Functions."""

__version__ = "0.1.0"
