"""Run a fake server in its own process (so a test can kill or SIGSTOP it):

    python -m mem0_routed.testing openai --fault omit_usage --log /tmp/requests.jsonl

Prints the server's URL on the first line of stdout, then serves until killed.
"""

from __future__ import annotations

import argparse
import sys
import threading

from ._base import FAULT_MODES
from ._ollama_server import FakeOllamaServer
from ._openai_server import FakeOpenAIServer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mem0_routed.testing", description=__doc__)
    p.add_argument("kind", choices=["ollama", "openai"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--fault", choices=[m for m in FAULT_MODES if m != "refused"], action="append", default=[])
    p.add_argument("--delay", type=float, default=1.0, help="seconds for slow/trickle faults")
    p.add_argument("--api-key", default=None, help="the one key the OpenAI server accepts (default: any)")
    p.add_argument("--log", default=None, help="append every request to this file as JSON lines")
    args = p.parse_args(argv)
    server: FakeOllamaServer | FakeOpenAIServer
    if args.kind == "ollama":
        server = FakeOllamaServer(port=args.port, log_path=args.log)
    else:
        server = FakeOpenAIServer(api_key=args.api_key, port=args.port, log_path=args.log)
    for mode in args.fault:
        server.set_fault(mode, delay_s=args.delay)
    server.start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
