#!/usr/bin/env python3
"""Client matrix, Python SDK cell (mcp 2.3.0 from tests/clients/.venv).

Runs the matrix's scripted session against tests/conformance/fixture_server.mjs behind the bridge
and prints one JSON line (fields: see tests/client_matrix.rs).

    tests/clients/.venv/bin/python tests/clients/matrix/py_matrix.py --transport streamable|sse --url URL
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any

import anyio
import mcp.types as types
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client


def emit(obj: dict[str, Any], code: int) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    os._exit(code)


def text_of(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


class Callbacks:
    """What the client answers and records: sampling, elicitation, log messages, progress."""

    def __init__(self) -> None:
        self.logs: list[Any] = []
        self.sampling_prompts: list[str] = []
        self.progress: list[float] = []

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        prompt = " ".join(m.content.text for m in params.messages if isinstance(m.content, types.TextContent))
        self.sampling_prompts.append(prompt)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled: {prompt}"),
            model="matrix",
            stop_reason="endTurn",
        )

    async def elicitation(self, context: ClientRequestContext, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"username": "matrix", "email": "matrix@example.com"})

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params.data)

    async def on_progress(self, value: float, total: float | None, message: str | None) -> None:
        self.progress.append(value)


async def run(transport: str, url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": False, "client": "python-sdk", "transport": transport}
    cb = Callbacks()
    logs, sampling_prompts, progress = cb.logs, cb.sampling_prompts, cb.progress
    sampling_callback, elicitation_callback, logging_callback = cb.sampling, cb.elicitation, cb.logging
    progress_callback = cb.on_progress

    cm = sse_client(url) if transport == "sse" else streamable_http_client(url)
    async with cm as streams:
        async with ClientSession(
            streams[0],
            streams[1],
            sampling_callback=sampling_callback,
            elicitation_callback=elicitation_callback,
            logging_callback=logging_callback,
            client_info=types.Implementation(name="mcp-bridge-matrix-py", version="0.0.0"),
        ) as session:
            init = await session.initialize()
            out["protocolVersion"] = init.protocol_version
            out["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
            out["resources"] = sorted(str(r.uri) for r in (await session.list_resources()).resources)
            out["prompts"] = sorted(p.name for p in (await session.list_prompts()).prompts)
            out["echo"] = text_of(await session.call_tool("echo", {"message": "hello"}))

            await session.set_logging_level("info")
            await session.call_tool("test_tool_with_logging", {})
            for _ in range(20):
                if len(logs) >= 3:
                    break
                await anyio.sleep(0.05)
            out["logs"] = len(logs)

            await session.call_tool("test_tool_with_progress", {}, progress_callback=progress_callback)
            for _ in range(20):
                if len(progress) >= 3:
                    break
                await anyio.sleep(0.05)
            out["progress"] = [int(p) for p in progress]

            rejected = True
            with anyio.move_on_after(0.3):
                await session.call_tool("test_slow", {"ms": 30000})
                rejected = False
            out["cancelCallRejected"] = rejected
            out["cancelled"] = text_of(await session.call_tool("test_cancellations", {}))

            out["sampling"] = text_of(await session.call_tool("test_sampling", {"prompt": "matrix"}))
            out["samplingRequests"] = len(sampling_prompts)
            out["elicitation"] = text_of(await session.call_tool("test_elicitation", {"message": "who are you?"}))
    out["ok"] = True
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--transport", required=True, choices=["sse", "streamable"])
    p.add_argument("--url", required=True)
    a = p.parse_args()
    hard = threading.Timer(60, lambda: emit({"ok": False, "error": "timeout after 60 s"}, 1))
    hard.daemon = True
    hard.start()
    try:
        result = anyio.run(run, a.transport, a.url)
    except BaseException as exc:  # noqa: BLE001 - one JSON line whatever happens
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 1)
    emit(result, 0)


if __name__ == "__main__":
    main()
