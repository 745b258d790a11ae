"""Stop a deploy whose gateway config would not start the gateway in Azure.

The config travels with the code: MCP_GATEWAY_CONFIG in Azure is a path relative to the app
root (default gateway.json). Before anything is packaged this checks that the file exists,
is a plain relative path that the package will contain, and passes
`python -m shared config check`. azd runs it as the prepackage hook (azure.yaml); run it
yourself before an az CLI or Core Tools publish:

    python infra/scripts/check_config.py [FILE]

FILE defaults to $MCP_GATEWAY_CONFIG, else gateway.json. Exit 0 when the deploy may go on.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

ROOT = Path(__file__).absolute().parents[2]
DEFAULT = "gateway.json"
SAMPLE = "gateway.azure.sample.json"


class Refused(Exception):
    """The config cannot be deployed; the message says why and what to do."""


def config_path(value: str) -> PurePosixPath:
    """MCP_GATEWAY_CONFIG as it will be read in Azure: a relative path inside the app."""
    if value.lstrip().startswith("{"):
        raise Refused(
            "MCP_GATEWAY_CONFIG holds a JSON document: deploy the config as a file instead. "
            f"Save it as {DEFAULT} and set MCP_GATEWAY_CONFIG={DEFAULT} (azd env set MCP_GATEWAY_CONFIG {DEFAULT})."
        )
    if "\\" in value:
        raise Refused(f"MCP_GATEWAY_CONFIG={value!r}: use '/' between folders (the app runs on Linux).")
    path = PurePosixPath(value)
    if path.is_absolute() or PureWindowsPath(value).drive or ".." in path.parts or not path.parts:
        raise Refused(
            f"MCP_GATEWAY_CONFIG={value!r} must be a path relative to the project root: "
            "the file is deployed with the code and read beside function_app.py."
        )
    return path


def ignore_patterns(root: Path) -> list[str]:
    funcignore = root / ".funcignore"
    if not funcignore.is_file():
        return []
    lines = (line.strip() for line in funcignore.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith(("#", "!"))]


def excluded_by(path: PurePosixPath, patterns: list[str]) -> str | None:
    """The .funcignore pattern that keeps `path` out of the package, if any (gitignore rules, simplified)."""
    parts = path.parts
    for pattern in patterns:
        directory_only = pattern.endswith("/")
        bare = pattern.strip("/")
        for depth in range(len(parts)):
            if directory_only and depth == len(parts) - 1:
                continue
            anchored = "/" in bare or pattern.startswith("/")
            candidate = "/".join(parts[: depth + 1]) if anchored else parts[depth]
            if fnmatch.fnmatchcase(candidate, bare):
                return pattern
    return None


def check(value: str, root: Path = ROOT) -> PurePosixPath:
    path = config_path(value)
    pattern = excluded_by(path, ignore_patterns(root))
    if pattern:
        raise Refused(f"{path} is excluded from the package by .funcignore ({pattern!r}): it would not be deployed.")
    if not (root / path).is_file():
        hint = f"cp {SAMPLE} {path}" if str(path) == DEFAULT else f"cp {SAMPLE} {path}, or set MCP_GATEWAY_CONFIG"
        raise Refused(f"{path} not found. Create it from the sample ({hint}), then edit it: see infra/README.md.")
    return path


def main(argv: list[str]) -> int:
    value = argv[0] if argv else (os.environ.get("MCP_GATEWAY_CONFIG") or DEFAULT)
    try:
        path = check(value)
    except Refused as refused:
        print(f"deploy stopped: {refused}", file=sys.stderr)
        return 2
    result = subprocess.run([sys.executable, "-m", "shared", "config", "check", str(path)], cwd=ROOT)
    if result.returncode != 0:
        if result.returncode != 2:  # 2 is the checker's own "config error", already explained
            print(
                f"deploy stopped: the checker could not run with {sys.executable}: "
                "install the gateway's requirements (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)",
                file=sys.stderr,
            )
        else:
            print(f"deploy stopped: fix {path}", file=sys.stderr)
        return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
