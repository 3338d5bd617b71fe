"""POST /v1/embeddings."""

from __future__ import annotations

import base64
from array import array

from fastapi import APIRouter

from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.deps import GatewayDep
from cloudlet.api.schemas import EmbeddingData, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from cloudlet.domain import ModelId
from cloudlet.errors import InvalidRequest

router = APIRouter()


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    responses=ERROR_RESPONSES,
    summary="Create embeddings",
)
async def embeddings(body: EmbeddingRequest, gateway: GatewayDep) -> EmbeddingResponse:
    texts = [body.input] if isinstance(body.input, str) else body.input
    result = await gateway.embed(ModelId(body.model), texts)
    dim = len(result.vectors[0]) if result.vectors else 0
    if body.dimensions is not None and body.dimensions != dim:
        raise InvalidRequest(
            f"model {body.model!r} makes {dim}-dimensional embeddings; it cannot shorten them",
            param="dimensions",
        )
    data = [
        EmbeddingData(
            index=i,
            embedding=vector
            if body.encoding_format == "float"
            else base64.b64encode(array("f", vector).tobytes()).decode(),
        )
        for i, vector in enumerate(result.vectors)
    ]
    usage = EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return EmbeddingResponse(data=data, model=body.model, usage=usage)
