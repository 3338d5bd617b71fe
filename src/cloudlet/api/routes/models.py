"""GET /v1/models, /v1/models/{id} and /v1/models/{id}/card."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.deps import GatewayDep, PipelineDep, TokenDep
from cloudlet.api.schemas import CardSummary, ModelList, ModelObject
from cloudlet.cards import card_to_dict, to_cyclonedx, to_mof_yaml
from cloudlet.domain import ModelInfo
from cloudlet.errors import ModelNotFound
from cloudlet.gateway.catalog import Catalog

router = APIRouter()


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


CatalogDep = Annotated[Catalog, Depends(_catalog)]


def _object(info: ModelInfo, status: str, catalog: Catalog) -> ModelObject:
    summary = catalog.summary(info.id)
    return ModelObject(
        id=info.id,
        created=info.created,
        owned_by=info.owned_by,
        kind=info.kind,
        context_length=info.context_length,
        capabilities=list(info.capabilities),
        status=status,
        card=CardSummary.model_validate(summary) if summary is not None else None,
    )


@router.get("/v1/models", response_model=ModelList, summary="List the models served here")
async def list_models(
    gateway: GatewayDep, catalog: CatalogDep, pipeline: PipelineDep, token: TokenDep
) -> ModelList:
    await pipeline.tenant(token)  # 401 when a key is needed and missing
    status = gateway.status()
    return ModelList(data=[_object(m, status[m.id], catalog) for m in gateway.models()])


@router.get(
    "/v1/models/{model_id:path}/card",
    responses={
        200: {
            "content": {
                "application/vnd.cyclonedx+json": {"schema": {"type": "object"}},
                "application/yaml": {"schema": {"description": "Model Openness Tool YAML"}},
            }
        },
        404: ERROR_RESPONSES[404],
    },
    summary="The model's transparency card (JSON, CycloneDX 1.6 or Model Openness Tool YAML)",
)
async def get_card(
    model_id: str,
    catalog: CatalogDep,
    pipeline: PipelineDep,
    token: TokenDep,
    format: Annotated[str, Query(pattern="^(json|cyclonedx|mof)$")] = "json",
) -> Any:
    await pipeline.tenant(token)
    card = catalog.card(model_id)
    if card is None:
        raise ModelNotFound(model_id)
    if format == "cyclonedx":
        return JSONResponse(to_cyclonedx(card), media_type="application/vnd.cyclonedx+json")
    if format == "mof":
        return PlainTextResponse(to_mof_yaml(card), media_type="application/yaml")
    return card_to_dict(card)


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelObject,
    responses={404: ERROR_RESPONSES[404]},
    summary="Describe one model",
)
async def get_model(
    model_id: str, gateway: GatewayDep, catalog: CatalogDep, pipeline: PipelineDep, token: TokenDep
) -> ModelObject:
    await pipeline.tenant(token)
    info = gateway.model(model_id)
    return _object(info, gateway.status()[info.id], catalog)
