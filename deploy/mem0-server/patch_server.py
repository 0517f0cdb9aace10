"""Make mem0's REST server build its config from the seed's env vars (one line, checked).

mem0's ``server/main.py`` builds ``DEFAULT_CONFIG`` in code (OpenAI for the LLM and the embedder) and
calls ``initialize_state(DEFAULT_CONFIG)``. This rewrites that call to
``initialize_state(mem0_config_from_env(DEFAULT_CONFIG))``, so ``MEM0_LLM_PROVIDER=routed`` etc. choose
the providers; with none of those env vars set the server behaves exactly as before.

Usage: ``python patch_server.py /app/main.py``. Exits non-zero, naming the file, when the server's code
does not contain the expected call exactly once (a newer mem0 server: check the line by hand).
"""

from __future__ import annotations

import sys
from pathlib import Path

OLD = "initialize_state(DEFAULT_CONFIG)"
NEW = "initialize_state(__import__('mem0_routed').mem0_config_from_env(DEFAULT_CONFIG))"


def patch(source: str) -> str:
    if NEW in source:
        return source  # already patched
    count = source.count(OLD)
    if count != 1:
        raise ValueError(f"expected {OLD!r} exactly once, found it {count} times")
    return source.replace(OLD, NEW)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python patch_server.py path/to/server/main.py", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        path.write_text(patch(path.read_text(encoding="utf-8")), encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"patch_server: {path}: {exc}; mem0's server changed, see deploy/README section in README.md",
              file=sys.stderr)
        return 1
    print(f"patch_server: {path}: config now from mem0_routed.mem0_config_from_env")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
