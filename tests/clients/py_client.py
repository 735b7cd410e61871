#!/usr/bin/env python3
"""Scripted MCP session using the official Python SDK (mcp 2.x) client.

    tests/clients/.venv/bin/python tests/clients/py_client.py --transport sse|streamable --url URL
        [--scenario full|basic] [--id-tag TAG] [--repeat N] [--timeout SECONDS] [--hold PATH]

With --hold PATH the session pauses after its echoes: it creates PATH, waits until the caller
removes it (while the caller breaks something, say), then echoes as many times again and goes on.

Prints exactly one JSON line on stdout: {"ok":true,...} (exit 0) or
{"ok":false,"error":"..."} (exit 1). Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

# Tool names as shipped by @modelcontextprotocol/server-everything 2026.8.31.
TOOL_ECHO = "echo"
TOOL_SUM = "get-sum"
TOOL_LONG = "trigger-long-running-operation"
TOOL_SAMPLING = "trigger-sampling-request"  # only listed for clients declaring `sampling`

PROGRESS_DURATION = 2  # seconds
PROGRESS_STEPS = 4

_emit_lock = threading.Lock()
_emitted = False


def emit(obj: dict[str, Any], code: int) -> None:
    """Print the single JSON result line once, then exit hard (no lingering tasks)."""
    global _emitted
    with _emit_lock:
        if not _emitted:
            _emitted = True
            sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    os._exit(code)


class Check(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise Check(f"assertion failed: {msg}")


def text_of(result: Any) -> str:
    check(isinstance(result, types.CallToolResult), f"tool result is CallToolResult (got {type(result).__name__})")
    check(not result.is_error, f"tool result is_error: {result.content!r}")
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def parse_args(argv: list[str]) -> argparse.Namespace:
    class P(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            emit({"ok": False, "error": f"usage: {message}"}, 1)

    p = P(description=__doc__)
    p.add_argument("--transport", required=True, choices=["sse", "streamable"])
    p.add_argument("--url", required=True)
    p.add_argument("--scenario", default="full", choices=["full", "basic"])
    p.add_argument("--id-tag", default=None)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--hold", default=None)
    a = p.parse_args(argv)
    if a.repeat < 1:
        p.error("--repeat must be a positive integer")
    if a.timeout <= 0:
        p.error("--timeout must be positive")
    return a


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    tag_part = f"-{opts.id_tag}" if opts.id_tag else ""
    out: dict[str, Any] = {"ok": False, "transport": opts.transport, "scenario": opts.scenario, "sessionId": None}

    state: dict[str, Any] = {
        "sampling_requests": 0,
        "sampled_text": None,
        "roots_requests": 0,
        "progress_cb": [],  # via call_tool(progress_callback=...)
        "progress_msg": [],  # via the session's message_handler (every notifications/progress)
    }

    async def sampling_callback(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        state["sampling_requests"] += 1
        texts = " ".join(m.content.text for m in params.messages if isinstance(m.content, types.TextContent))
        state["sampled_text"] = f"sampled: {texts}"
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=state["sampled_text"]),
            model="mcp-bridge-fixed-model",
            stop_reason="endTurn",
        )

    async def list_roots_callback(context: ClientRequestContext) -> types.ListRootsResult:
        state["roots_requests"] += 1
        return types.ListRootsResult(roots=[])

    async def elicitation_callback(context: ClientRequestContext, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    async def message_handler(message: Any) -> None:
        if isinstance(message, Exception):
            print(f"[py_client] transport exception: {message!r}", file=sys.stderr)
        elif isinstance(message, types.ProgressNotification):
            state["progress_msg"].append(message.params.progress)

    async def progress_callback(progress: float, total: float | None, message: str | None) -> None:
        state["progress_cb"].append(progress)

    def set_session_id(sid: str | None) -> None:
        if sid and out["sessionId"] is None:
            out["sessionId"] = sid

    if opts.transport == "sse":
        transport_cm = sse_client(opts.url, on_session_created=set_session_id)
        http_client = None
    else:
        # mcp 2.x streamable_http_client does not expose the session id; capture it from responses.
        async def on_response(response: httpx2.Response) -> None:
            set_session_id(response.headers.get("mcp-session-id"))

        http_client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(30.0, read=300.0), event_hooks={"response": [on_response]}
        )
        transport_cm = streamable_http_client(opts.url, http_client=http_client)

    try:
        async with transport_cm as streams:
            read_stream, write_stream = streams[0], streams[1]
            async with ClientSession(
                read_stream,
                write_stream,
                sampling_callback=sampling_callback,
                elicitation_callback=elicitation_callback,
                list_roots_callback=list_roots_callback,
                message_handler=message_handler,
                client_info=types.Implementation(name="mcp-bridge-py-test-client", version="0.0.0"),
            ) as session:
                init = await session.initialize()
                out["protocolVersion"] = init.protocol_version
                out["server"] = init.server_info.name

                required = [TOOL_ECHO, TOOL_SUM, TOOL_LONG, TOOL_SAMPLING] if opts.scenario == "full" else [TOOL_ECHO]
                tools: list[str] = []
                attempts = 0
                while attempts < 20:
                    attempts += 1
                    tools = [t.name for t in (await session.list_tools()).tools]
                    if all(n in tools for n in required):
                        break
                    await anyio.sleep(0.1)
                out["toolListAttempts"] = attempts
                out["tools"] = tools
                for n in required:
                    check(n in tools, f"tool {n} listed (got {','.join(tools)})")

                last_echo = None
                rounds = ["", "after-"] if opts.hold else [""]
                for prefix in rounds:
                    if prefix:
                        open(opts.hold, "w").close()
                        while os.path.exists(opts.hold):  # bounded by --timeout
                            await anyio.sleep(0.05)
                    for i in range(opts.repeat):
                        msg = f"hello{tag_part}-{prefix}{i}"
                        text = text_of(await session.call_tool(TOOL_ECHO, {"message": msg}))
                        check(text == f"Echo: {msg}", f"echo {i} returned its own message (sent {msg!r}, got {text!r})")
                        last_echo = text
                out["echo"] = last_echo
                out["echoCount"] = opts.repeat * len(rounds)

                if opts.scenario == "full":
                    sum_text = text_of(await session.call_tool(TOOL_SUM, {"a": 2, "b": 3}))
                    m = re.search(r"is (-?[\d.]+)\.?$", sum_text)
                    check(m is not None and float(m.group(1)) == 5, f"get-sum(2,3) is 5 (got {sum_text!r})")
                    assert m is not None
                    out["sum"] = int(float(m.group(1)))

                    long_text = text_of(
                        await session.call_tool(
                            TOOL_LONG,
                            {"duration": PROGRESS_DURATION, "steps": PROGRESS_STEPS},
                            progress_callback=progress_callback,
                        )
                    )
                    check("completed" in long_text.lower(), f"long-running op completed (got {long_text!r})")
                    # callbacks are spawned as tasks; give stragglers a moment
                    for _ in range(10):
                        if len(state["progress_cb"]) >= PROGRESS_STEPS and len(state["progress_msg"]) >= PROGRESS_STEPS:
                            break
                        await anyio.sleep(0.05)
                    out["progress"] = len(state["progress_cb"])
                    out["progressValues"] = state["progress_cb"]
                    out["progressNotifications"] = len(state["progress_msg"])
                    check(
                        len(state["progress_cb"]) >= PROGRESS_STEPS - 1,
                        f">= {PROGRESS_STEPS - 1} progress callbacks (got {len(state['progress_cb'])})",
                    )

                    prompt = f"ping{tag_part}"
                    sample_text = text_of(await session.call_tool(TOOL_SAMPLING, {"prompt": prompt, "maxTokens": 20}))
                    sampled = state["sampled_text"]
                    check(state["sampling_requests"] == 1, f"exactly one sampling request (got {state['sampling_requests']})")
                    check(sampled is not None and prompt in sampled, f"sampling request carried our prompt (got {sampled!r})")
                    check(sampled in sample_text, f"sampling tool result contains our sampled text (got {sample_text!r})")
                    out["sampling"] = sampled
                    out["samplingRequests"] = state["sampling_requests"]
                out["rootsRequests"] = state["roots_requests"]
        # leaving streamable_http_client sends DELETE (terminate_on_close=True)
    finally:
        if http_client is not None:
            await http_client.aclose()

    out["ok"] = True
    return {"ok": True, **{k: v for k, v in out.items() if k != "ok"}}


async def run_with_timeout(opts: argparse.Namespace) -> dict[str, Any]:
    with anyio.fail_after(opts.timeout):
        return await run(opts)


def describe(exc: BaseException) -> str:
    # unwrap exception groups raised by anyio task groups
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timeout"
    msg = str(exc) or repr(exc)
    return msg if isinstance(exc, Check) else f"{type(exc).__name__}: {msg}"


def main() -> None:
    opts = parse_args(sys.argv[1:])
    # Hard watchdog in case cancellation itself hangs.
    hard = threading.Timer(
        opts.timeout + 5, lambda: emit({"ok": False, "error": f"timeout after {opts.timeout}s (hard)"}, 1)
    )
    hard.daemon = True
    hard.start()
    try:
        result = anyio.run(run_with_timeout, opts)
    except BaseException as exc:  # noqa: BLE001 - report everything as one JSON line
        err = describe(exc)
        if err == "timeout":
            err = f"timeout after {opts.timeout}s"
        emit({"ok": False, "error": err}, 1)
    emit(result, 0)


if __name__ == "__main__":
    main()
