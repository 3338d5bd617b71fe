"""A fake OpenAI-compatible upstream with fault injection, on a real loopback socket.

A minimal HTTP/1.1 server on raw asyncio (keep-alive, chunked SSE), run on its own thread so
that tests, which are synchronous or run their own loop, and a `cloudlet serve` subprocess
can both talk to it. It records every request (method, path, headers, body) so tests can
check what reached it, and answers according to a queue of faults, one per request, then the
default:

    Ok()                        a normal answer (streamed when the request asks for it)
    Status(code, retry_after)   an error status with an OpenAI error body (500, 429, 401 ...)
    Slow(seconds)               wait before the response headers (first-token timeouts)
    Drop(after)                 stream `after` chunks, then cut the connection (mid-stream)
    Dead()                      read the request, close without answering
    Hold(after)                 stream `after` chunks, then wait for `release()`
    NoUsage()                   a normal stream that ignores stream_options.include_usage
    Raw(body, status, type)     exactly this body (a malformed reply), whatever was asked
    Lines(lines)                a 200 event stream of exactly these lines, then the end
    JsonAnswer()                a whole JSON completion although a stream was asked for
    KeepAlive(every)            one word, then an SSE comment every `every` seconds, forever
    BadUsage(usage)             a normal stream whose usage chunk carries `usage` verbatim

`prompt_tokens`, when set, computes the prompt tokens reported from the request body (the
default reports 11): tests that check budgets make it count like a worst-case tokenizer.

A chat request with `tools` (and `tool_choice` other than none) gets one streamed call to the
named function, else the first, with TOOL_ARGUMENTS; `logprobs` get made-up log-probabilities;
`n` gets that many choices (see `choice_word`), interleaved.

Run as a script (`python tests/fakes_upstream.py --port 9000 [--delay-ms 300]`) it serves
forever: the benchmarks' fake upstream (or fake cloud, with a delay).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ok:
    pass


@dataclass(frozen=True)
class Status:
    code: int
    retry_after: int | None = None


@dataclass(frozen=True)
class Slow:
    seconds: float


@dataclass(frozen=True)
class Drop:
    after: int = 1


@dataclass(frozen=True)
class Dead:
    pass


@dataclass(frozen=True)
class Hold:
    after: int = 1


@dataclass(frozen=True)
class NoUsage:
    pass


@dataclass(frozen=True)
class Raw:
    body: bytes
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class Lines:
    lines: tuple[bytes, ...]


@dataclass(frozen=True)
class JsonAnswer:
    pass


@dataclass(frozen=True)
class KeepAlive:
    every: float = 0.1


@dataclass(frozen=True)
class BadUsage:
    usage: Any


Fault = (
    Ok
    | Status
    | Slow
    | Drop
    | Dead
    | Hold
    | NoUsage
    | Raw
    | Lines
    | JsonAnswer
    | KeepAlive
    | BadUsage
)
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many"}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeUpstream:
    words: Sequence[str] = ("Hello", " from", " upstream")
    default: Fault = field(default_factory=Ok)
    healthy: bool = True
    record: bool = True
    known: tuple[str, ...] | None = None  # model names served (None: any); others get 404
    requests: list[Recorded] = field(default_factory=list)
    prompt_tokens: Callable[[Any], int] | None = None

    def __post_init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._release: asyncio.Event | None = None
        self.port = 0

    # --- control, from any thread ------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def release(self) -> None:
        """Let every held stream go on."""
        self._loop.call_soon_threadsafe(self._open_gate)

    def _open_gate(self) -> None:
        assert self._release is not None
        self._release.set()  # the held streams go on; later ones wait for the next release
        self._release = asyncio.Event()

    def calls(self, path_suffix: str = "/chat/completions") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]

    def start(self, port: int = 0) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._release = asyncio.Event()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", port, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    # --- serving, on the server's loop -------------------------------------------------------

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._faults.pop(0) if self._faults else self.default

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                size = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(size) if size else b""
                body = json.loads(raw) if raw else None
                if self.record:
                    with self._lock:
                        self.requests.append(Recorded(method, path, headers, body))
                if not await self._answer(method, path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the fake is stopping
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, method: str, path: str, body: Any, writer: asyncio.StreamWriter
    ) -> bool:
        """Write one response; False when the connection must close."""
        if method == "GET" and path.endswith("/models"):
            if not self.healthy:
                _respond(writer, 503, {"error": {"message": "unhealthy"}})
            else:
                _respond(writer, 200, {"object": "list", "data": [{"id": "upstream-model"}]})
            await writer.drain()
            return True
        if self.known is not None and body.get("model") not in self.known:
            error = {"message": f"The model `{body.get('model')}` does not exist"}
            _respond(writer, 404, {"error": {**error, "code": "model_not_found"}})
            await writer.drain()
            return True
        fault = self._next_fault()
        if isinstance(fault, Dead):
            return False
        if isinstance(fault, Slow):
            await asyncio.sleep(fault.seconds)
        if isinstance(fault, Status):
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            error = {"error": {"message": f"injected {fault.code}", "type": "server_error"}}
            _respond(writer, fault.code, error, extra)
            await writer.drain()
            return True
        if isinstance(fault, Raw):
            head = (
                f"HTTP/1.1 {fault.status} X\r\nContent-Type: {fault.content_type}\r\n"
                f"Content-Length: {len(fault.body)}\r\n\r\n"
            )
            writer.write(head.encode() + fault.body)
            await writer.drain()
            return True
        if isinstance(fault, Lines | KeepAlive):
            return await self._odd_stream(body, fault, writer)
        if path.endswith("/embeddings"):
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
                for i, t in enumerate(texts)
            ]
            usage = {"prompt_tokens": 7 * len(texts), "total_tokens": 7 * len(texts)}
            _respond(
                writer,
                200,
                {"object": "list", "data": data, "model": body["model"], "usage": usage},
            )
            await writer.drain()
            return True
        chat = path.endswith("/chat/completions")
        if not body.get("stream") or isinstance(fault, JsonAnswer):
            _respond(writer, 200, _completion(body, self.words, chat))
            await writer.drain()
            return True
        return await self._stream(body, chat, fault, writer)

    async def _stream(
        self, body: Any, chat: bool, fault: Fault, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        limit = body.get("max_tokens") or len(self.words)
        words = list(self.words)[:limit]
        n = body.get("n") or 1
        chunks = [
            _chunk(body, {"role": "assistant", "content": ""} if chat else "", None, chat, c)
            for c in range(n)
        ]
        call = _tool_to_call(body) if chat else None
        if call is not None:  # a call in OpenAI's delta shape: id and name once, then pieces
            first = {"index": 0, "id": "call_up1", "type": "function"}
            first["function"] = {"name": call, "arguments": ""}
            chunks.append(_chunk(body, {"tool_calls": [first]}, None, chat))
            for piece in TOOL_ARGUMENTS:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                chunks.append(_chunk(body, delta, None, chat))
            reason = "tool_calls"
        else:
            for w in words:
                for c in range(n):  # choices interleaved, as OpenAI streams them
                    piece = choice_word(w, c)
                    chunks.append(
                        _chunk(body, {"content": piece} if chat else piece, None, chat, c)
                    )
                    if chat and body.get("logprobs"):
                        top = [{"token": w, "logprob": -0.5}] * int(body.get("top_logprobs") or 0)
                        content = [{"token": w, "logprob": -0.5, "top_logprobs": top}]
                        chunks[-1]["choices"][0]["logprobs"] = {"content": content}
            reason = "length" if limit < len(self.words) else "stop"
        chunks += [_chunk(body, {} if chat else "", reason, chat, c) for c in range(n)]
        usage_wanted = (body.get("stream_options") or {}).get("include_usage")
        if usage_wanted and not isinstance(fault, NoUsage):
            prompt = self.prompt_tokens(body) if self.prompt_tokens is not None else 11
            usage: Any = {
                "prompt_tokens": prompt,
                "completion_tokens": len(words) * n,
                "total_tokens": prompt + len(words) * n,
            }
            if isinstance(fault, BadUsage):
                usage = fault.usage
            chunks.append(
                {"id": "up-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        for i, chunk in enumerate(chunks):
            if isinstance(fault, Drop | Hold) and i == fault.after + 1:  # +1: the role chunk
                if isinstance(fault, Drop):
                    writer.transport.abort()
                    return False
                assert self._release is not None
                await self._release.wait()
            _write_chunk(writer, b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await writer.drain()
        _write_chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _odd_stream(
        self, body: Any, fault: Lines | KeepAlive, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        if isinstance(fault, Lines):
            for line in fault.lines:
                _write_chunk(writer, line + b"\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        first = _chunk(body, {"content": self.words[0]}, None, chat=True)
        _write_chunk(writer, b"data: " + json.dumps(first).encode() + b"\n\n")
        while True:  # until the client leaves
            await writer.drain()
            await asyncio.sleep(fault.every)
            _write_chunk(writer, b": keep-alive\n\n")


# The arguments the fake's tool calls carry, in the pieces it streams them in.
TOOL_ARGUMENTS = ('{"city": ', '"Par', 'is"}')


def _tool_to_call(body: Any) -> str | None:
    """The function a request with tools gets a call to: the named one, else the first."""
    tools, choice = body.get("tools"), body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return str(choice["function"]["name"])
    return str(tools[0]["function"]["name"])


def choice_word(word: str, choice: int) -> str:
    """What choice ``choice`` of a request for several says for ``word``: choice 0 the word,
    the others the word and their index (so that a test can tell the choices apart)."""
    return f"{word}{choice}" if choice else word


def _chunk(body: Any, piece: Any, reason: str | None, chat: bool, index: int = 0) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "finish_reason": reason}
    choice["delta" if chat else "text"] = piece
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {"id": "up-1", "object": kind, "model": body["model"], "choices": [choice]}


def _completion(body: Any, words: Sequence[str], chat: bool) -> dict[str, Any]:
    n = body.get("n") or 1
    choices: list[dict[str, Any]] = []
    for c in range(n):
        text = "".join(choice_word(w, c) for w in words)
        choice: dict[str, Any] = {"index": c, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choices.append(choice)
    completion = len(words) * n
    usage = {"prompt_tokens": 11, "completion_tokens": completion, "total_tokens": 11 + completion}
    kind = "chat.completion" if chat else "text_completion"
    return {
        "id": "up-1",
        "object": kind,
        "created": 0,
        "model": body["model"],
        "choices": choices,
        "usage": usage,
    }


def _respond(
    writer: asyncio.StreamWriter, status: int, payload: Any, extra: dict[str, str] | None = None
) -> None:
    data = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
    )
    for name, value in (extra or {}).items():
        head += f"{name}: {value}\r\n"
    head += f"Content-Length: {len(data)}\r\n\r\n"
    writer.write(head.encode() + data)


def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible upstream.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0, help="before every answer")
    parser.add_argument("--words", type=int, default=3, help="words per streamed answer")
    args = parser.parse_args()
    fault: Fault = Slow(args.delay_ms / 1000) if args.delay_ms else Ok()
    words = tuple(f" w{i}" for i in range(args.words))
    upstream = FakeUpstream(words=words, default=fault, record=False).start(args.port)
    print(upstream.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()
