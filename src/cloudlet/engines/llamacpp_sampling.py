"""Per-sequence sampling and detokenizing for the batched llama.cpp engine.

Every sequence in a batch needs its own sampler state (its seed's random stream, its grammar's
parse position, its penalty history), so each gets its own llama.cpp sampler chain. The chain
is built in the same order and with the same defaults as ``Llama._init_sampler`` (what
``Llama.generate`` and llama-cpp-python's own server use), so a request samples alike here.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import LlamaGrammar

from cloudlet.domain import GenerationRequest, TokenLogprob
from cloudlet.engines.llamacpp_common import grammar_source
from cloudlet.errors import InvalidRequest

# Llama's last_n_tokens_size default: how many recent tokens the penalties look at.
PENALTY_LAST_N = 64


class SamplerChain:
    """Owns one native sampler chain; ``close`` frees it (idempotent).

    Built at admission (on a worker thread), so a grammar llama.cpp rejects fails the request
    before its stream starts; used and closed on the decode thread afterwards.
    """

    def __init__(
        self,
        vocab: Any,
        request: GenerationRequest,
        grammar: LlamaGrammar | None,
        triggers: Sequence[str] = (),
    ) -> None:
        s = request.sampling
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain: Any = chain
        add = self._add
        add(
            llama_cpp.llama_sampler_init_penalties(
                n_vocab,
                PENALTY_LAST_N,
                s.repeat_penalty,
                s.frequency_penalty,
                s.presence_penalty,
            )
        )
        if grammar is not None:
            text, root = grammar_source(grammar)
            if triggers:  # lazy: free text until a trigger pattern matches
                patterns = (ctypes.c_char_p * len(triggers))(*(t.encode() for t in triggers))
                sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
                    vocab,
                    text.encode("utf-8"),
                    root.encode("utf-8"),
                    patterns,
                    len(triggers),
                    None,
                    0,
                )
            else:
                sampler = llama_cpp.llama_sampler_init_grammar(
                    vocab, text.encode("utf-8"), root.encode("utf-8")
                )
            if not sampler:
                self.close()
                raise InvalidRequest(
                    "llama.cpp could not compile the grammar for this schema",
                    param="tools" if request.tools else "response_format",
                )
            add(sampler)
        if s.temperature == 0.0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            seed = s.seed if s.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            # typical_p is 1.0 (a no-op) in Llama.generate's defaults; left out here.
            add(llama_cpp.llama_sampler_init_top_k(s.top_k))
            add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            add(llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(s.temperature))
            add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def _add(self, sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)  # the chain now owns it

    def sample(self, ctx: Any, index: int) -> int:
        """Sample from the logits of batch row ``index`` and advance the chain's state."""
        token: int = llama_cpp.llama_sampler_sample(self._chain, ctx, index)
        return token

    def close(self) -> None:
        chain, self._chain = self._chain, None
        if chain is not None:
            llama_cpp.llama_sampler_free(chain)


class TokenPieces:
    """Token id → its bytes, cached: the vocabulary is fixed, and this runs once per token.

    Renders like ``Llama.detokenize([token])``: special tokens (end of turn) render as nothing.
    Used on the decode thread only.
    """

    def __init__(self, vocab: Any) -> None:
        self._vocab = vocab
        self._buffer = ctypes.create_string_buffer(64)
        self._cache: dict[int, bytes] = {}

    def __call__(self, token: int) -> bytes:
        piece = self._cache.get(token)
        if piece is None:
            piece = self._render(token)
            self._cache[token] = piece
        return piece

    def _render(self, token: int) -> bytes:
        size = len(self._buffer)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._buffer, size, 0, False)
        if n < 0:  # longer than the buffer: llama.cpp says how long
            self._buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, self._buffer, -n, 0, False)
        return bytes(self._buffer.raw[: max(n, 0)])


def token_logprob(
    ctx: Any, row: int, token: int, top: int, n_vocab: int, pieces: TokenPieces
) -> TokenLogprob:
    """The log-probability of ``token`` under the model's distribution at batch row ``row``
    (the raw logits, before sampling settings), and the ``top`` most likely tokens there."""
    pointer = llama_cpp.llama_get_logits_ith(ctx, row)
    logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,)).astype(np.float64)
    peak = logits.max()
    total = peak + math.log(float(np.exp(logits - peak).sum()))
    alternatives: tuple[tuple[str, float], ...] = ()
    if top:
        best = np.argpartition(logits, -top)[-top:]
        best = best[np.argsort(-logits[best])]
        alternatives = tuple((_text(pieces(int(i))), float(logits[i] - total)) for i in best)
    return TokenLogprob(_text(pieces(token)), float(logits[token] - total), alternatives)


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")
