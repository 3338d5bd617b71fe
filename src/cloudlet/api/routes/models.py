"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter

from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.deps import GatewayDep
from cloudlet.api.schemas import ModelCard, ModelList
from cloudlet.domain import ModelInfo

router = APIRouter()


def _card(info: ModelInfo, status: str) -> ModelCard:
    return ModelCard(
        id=info.id,
        created=info.created,
        owned_by=info.owned_by,
        kind=info.kind,
        context_length=info.context_length,
        status=status,
    )


@router.get("/v1/models", response_model=ModelList, summary="List the models served here")
async def list_models(gateway: GatewayDep) -> ModelList:
    status = gateway.status()
    return ModelList(data=[_card(m, status[m.id]) for m in gateway.models()])


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelCard,
    responses={404: ERROR_RESPONSES[404]},
    summary="Describe one model",
)
async def get_model(model_id: str, gateway: GatewayDep) -> ModelCard:
    info = gateway.model(model_id)
    return _card(info, gateway.status()[info.id])
