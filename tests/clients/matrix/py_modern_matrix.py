#!/usr/bin/env python3
"""Client matrix, Python SDK cell at 2026-07-28 (mcp 2.3.0 from tests/clients/.venv).

Speaks protocol revision 2026-07-28 to the same endpoint as the other cells (/mcp/matrix): the
bridge serves each request on a backing session of the 2025 fixture
(tests/conformance/fixture_server.mjs). Prints one JSON line with the same fields as
py_matrix.py (see tests/client_matrix.rs).

    tests/clients/.venv/bin/python tests/clients/matrix/py_modern_matrix.py --url URL

The version is pinned: `Client(..., mode="2026-07-28")` adopts 2026-07-28 without the
initialize handshake (no fallback), and the script then sends its own `server/discover` at
2026-07-28 and fails unless the server lists that version. Every HTTP response is checked for
an `Mcp-Session-Id` (there must be none). What differs from the 2025 cells:
  4  logging: no logging/setLevel; the logging call carries `_meta`
     io.modelcontextprotocol/logLevel = info (per request);
  6  cancellation: leaving the call's cancel scope makes the SDK abort that POST (it swallows
     its own notifications/cancelled at 2026); the cell reports that the call did not complete,
     and the test checks the bridge log for the cancelled request;
  7/8 sampling and elicitation arrive as an InputRequiredResult; `Client.call_tool` hands them
     to the same callbacks and retries with inputResponses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

# The same answers and records as the 2025 cell (this script's own directory is on sys.path).
from py_matrix import Callbacks, text_of

MODERN = "2026-07-28"
LOG_LEVEL_META_KEY = "io.modelcontextprotocol/logLevel"
STEP = 15.0


def emit(obj: dict[str, Any], code: int) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    os._exit(code)



async def run(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": False, "client": "python-sdk-modern", "transport": "streamable"}
    session_ids: list[str] = []
    cb = Callbacks()
    logs, sampling_prompts, progress = cb.logs, cb.sampling_prompts, cb.progress
    sampling_callback, elicitation_callback, logging_callback = cb.sampling, cb.elicitation, cb.logging
    progress_callback = cb.on_progress

    async def on_response(response: httpx2.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid:
            session_ids.append(sid)

    http = create_mcp_http_client()
    http.event_hooks["response"].append(on_response)
    async with http:
        transport = streamable_http_client(url, http_client=http)
        client = Client(
            transport,
            mode=MODERN,
            sampling_callback=sampling_callback,
            elicitation_callback=elicitation_callback,
            logging_callback=logging_callback,
            client_info=types.Implementation(name="mcp-bridge-matrix-py-modern", version="0.0.0"),
            read_timeout_seconds=STEP,
            cache=None,
        )
        # Entering adopts the pinned version (no wire traffic); the hard timer in main() bounds it all.
        async with client:
            with anyio.fail_after(STEP):
                discover = await client.session.send_discover(MODERN)
            versions = discover.get("supportedVersions") or []
            if MODERN not in versions:
                raise RuntimeError(f"server/discover does not list {MODERN}: {versions}")
            out["protocolVersion"] = client.protocol_version
            out["era"] = "modern" if client.protocol_version == MODERN else "legacy"

            with anyio.fail_after(STEP):
                out["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
                out["resources"] = sorted(str(r.uri) for r in (await client.list_resources()).resources)
                out["prompts"] = sorted(p.name for p in (await client.list_prompts()).prompts)
                out["echo"] = text_of(await client.call_tool("echo", {"message": "hello"}))

            # 4: per-request log level instead of logging/setLevel.
            with anyio.fail_after(STEP):
                await client.call_tool("test_tool_with_logging", {}, meta={LOG_LEVEL_META_KEY: "info"})  # type: ignore[typeddict-unknown-key]
            for _ in range(20):
                if len(logs) >= 3:
                    break
                await anyio.sleep(0.05)
            out["logs"] = len(logs)

            with anyio.fail_after(STEP):
                await client.call_tool("test_tool_with_progress", {}, progress_callback=progress_callback)
            for _ in range(20):
                if len(progress) >= 3:
                    break
                await anyio.sleep(0.05)
            out["progress"] = [int(p) for p in progress]

            # 6: leaving the scope cancels the call, which at 2026 closes its response.
            rejected = True
            with anyio.move_on_after(0.3):
                await client.call_tool("test_slow", {"ms": 30000})
                rejected = False
            out["cancelCallRejected"] = rejected

            with anyio.fail_after(STEP):
                out["sampling"] = text_of(await client.call_tool("test_sampling", {"prompt": "matrix"}))
            out["samplingRequests"] = len(sampling_prompts)
            with anyio.fail_after(STEP):
                out["elicitation"] = text_of(await client.call_tool("test_elicitation", {"message": "who are you?"}))
    out["sessionId"] = session_ids[0] if session_ids else None
    out["ok"] = True
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    a = p.parse_args()
    hard = threading.Timer(60, lambda: emit({"ok": False, "error": "timeout after 60 s"}, 1))
    hard.daemon = True
    hard.start()
    try:
        result = anyio.run(run, a.url)
    except BaseException as exc:  # noqa: BLE001 - one JSON line whatever happens
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 1)
    emit(result, 0)


if __name__ == "__main__":
    main()
