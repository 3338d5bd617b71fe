"""Domain types: what a request asks for and what an engine answers, independent of the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NewType

ModelId = NewType("ModelId", str)
ModelKind = Literal["chat", "embedding"]
FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]
WorkerStatus = Literal["starting", "up", "restarting", "failed", "stopped"]
ToolChoiceMode = Literal["none", "auto", "required", "function"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant made: ``arguments`` is JSON text, as on the OpenAI wire."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON schema (an object)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def as_wire_dict(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        if self.parameters is not None:
            function["parameters"] = self.parameters
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``none``, ``auto``, ``required``, or ``function`` (then ``name`` says which)."""

    mode: ToolChoiceMode = "auto"
    name: str | None = None

    def as_wire(self) -> str | dict[str, Any]:
        if self.mode == "function":
            return {"type": "function", "function": {"name": self.name}}
        return self.mode


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat. ``parts`` holds OpenAI content parts (images) verbatim, for
    engines that take them; ``content`` is always the text alone."""

    role: str
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    parts: tuple[dict[str, Any], ...] = ()

    def as_template_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        return out

    def as_wire_dict(self) -> dict[str, Any]:
        """The message on the OpenAI chat wire, tool calls and content parts included."""
        out = self.as_template_dict()
        if self.parts:
            out["content"] = list(self.parts)
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
            if not self.content:
                out["content"] = None
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling settings; the defaults are OpenAI's."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``text`` (free), ``json_object`` (any JSON object) or ``json_schema`` (that schema)."""

    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation: chat ``messages`` (in the model template) or a raw ``prompt``."""

    model: ModelId
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    n: int = 1  # choices: sequences generated from the one prompt

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("exactly one of messages and prompt must be given")
        if self.n < 1:
            raise ValueError("n must be at least 1")

    def completion_bound(self, max_tokens_default: int) -> int:
        """The most completion tokens this request can cost: ``max_tokens`` (or the model's
        default) for each of its ``n`` choices. What budgets reserve and charges are capped at."""
        return (self.max_tokens or max_tokens_default) * self.n


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One sampled token's log-probability and the most likely alternatives at its place."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text (never splits a UTF-8 character); with ``logprobs`` asked
    for, the log-probabilities of the tokens that made it."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    choice: int = 0  # which of the request's ``n`` choices it belongs to


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of tool call ``index``: ``id`` and ``name`` come once, in its first piece,
    then ``arguments`` (JSON text) in pieces that concatenate to the whole."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    choice: int = 0  # which of the request's ``n`` choices made the call


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of every generation, also of one with several choices: ``usage``
    counts the prompt once and the completion tokens of every choice, ``reason`` is choice
    0's and ``choices`` each choice's (empty for a request of one). ``stop_sequence``: the
    stop string that ended choice 0, when one did. ``queued_s``: how long the generation
    waited for a slot of its engine before it began (a local engine's queue, a replica's
    ``parallel`` slots), None when nobody measured it."""

    reason: FinishReason
    usage: Usage
    choices: tuple[FinishReason, ...] = ()
    stop_sequence: str | None = None
    queued_s: float | None = None

    def reason_of(self, choice: int) -> FinishReason:
        return self.choices[choice] if self.choices else self.reason


GenerationEvent = TextDelta | ToolCallDelta | Finished


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: ModelId
    kind: ModelKind
    engine: str
    context_length: int
    created: int
    owned_by: str = "cloudlet"
    source: str = ""
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineStats:
    """What an engine reports for routing and metrics."""

    queue_depth: int = 0
    running: int = 0
    capacity: int = 1
    tokens_per_second: float = 0.0
    estimated_queue_wait_s: float = 0.0
    prompt_tokens_evaluated: int = 0
    prompt_tokens_cached: int = 0
    requests_total: int = 0
    job_seconds: float = 0.0  # the engine's estimate of one request's duration (0: unknown)
    #: Prefill and decode rates, per busy second, smoothed over recent busy time (0: not
    #: measured): what a local model's prompt and generated tokens are priced by.
    prompt_tokens_per_second: float = 0.0
    completion_tokens_per_second: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerState:
    """A supervised engine worker process, as ``/ready``, ``/stats`` and metrics show it."""

    state: WorkerStatus
    restarts: int = 0
    safe_mode: bool = False
    pid: int | None = None
    last_exit: str | None = None  # how the last worker process ended, in words
