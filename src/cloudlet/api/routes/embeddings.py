"""POST /v1/embeddings."""

from __future__ import annotations

import base64
import math
from array import array

from fastapi import APIRouter, Request, Response

from cloudlet.api.bodies import read_body, request_body
from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.chat import where_headers
from cloudlet.api.routes.deps import call_of
from cloudlet.api.schemas import EmbeddingData, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from cloudlet.domain import ModelId
from cloudlet.errors import InvalidRequest

router = APIRouter()


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    responses=ERROR_RESPONSES,
    summary="Create embeddings",
    openapi_extra=request_body(EmbeddingRequest),
)
async def embeddings(raw: Request, response: Response) -> EmbeddingResponse:
    body = await read_body(raw, EmbeddingRequest)
    call = call_of(raw)
    texts = [body.input] if isinstance(body.input, str) else body.input
    embedding = await call.pipeline.embed(call.token, ModelId(body.model), texts, call.arrival)
    result = embedding.result
    response.headers.update(where_headers(embedding.target, embedding.spilled))
    vectors = result.vectors
    dim = len(vectors[0]) if vectors else 0
    if body.dimensions is not None and body.dimensions > dim:
        raise InvalidRequest(
            f"model {body.model!r} makes {dim}-dimensional embeddings; "
            f"dimensions must be at most {dim}",
            param="dimensions",
        )
    if body.dimensions is not None and body.dimensions < dim:
        vectors = [_shorten(v, body.dimensions) for v in vectors]
    data = [
        EmbeddingData(
            index=i,
            embedding=vector
            if body.encoding_format == "float"
            else base64.b64encode(array("f", vector).tobytes()).decode(),
        )
        for i, vector in enumerate(vectors)
    ]
    usage = EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return EmbeddingResponse(data=data, model=body.model, usage=usage)


def _shorten(vector: list[float], dimensions: int) -> list[float]:
    """OpenAI's ``dimensions``: keep the first components and scale back to unit length."""
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head)) or 1.0
    return [x / norm for x in head]
