"""REST APIs served as MCP servers: the `openapi` server kind.

    document.py    read an OpenAPI 3.0/3.1 document (file or URL, JSON or YAML), look up $refs
    schema.py      OpenAPI schemas as JSON Schema 2020-12, components kept as $defs
    names.py       tool and argument names: valid, unique, stable
    operations.py  one tool definition per operation; start-up errors name the operation
    request.py     validated arguments -> the HTTP request (path, query, headers, body)
    content.py     the HTTP response -> the tool result
    api.py         one API: a tool call from arguments to result, through the gateway's transport
    server.py      the MCP SDK server for each API, stateless, and its lifetime

Imported only when the config has an `openapi` server (app.py), so that a gateway
that only proxies never loads it.
"""
