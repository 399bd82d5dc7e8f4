"""The asset hierarchy (enterprise -> site -> area -> line -> machine) and master data."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import ValidationError

from api.auth import PrincipalDep, SiteContext, site_access
from api.masterdata import import_site, list_sites
from api.schemas import AssetNode, SiteOut, SiteTree
from api.state import get_state
from zhizao.site import SiteModel

router = APIRouter(tags=["sites"])

Aggregate = Annotated[SiteContext, Depends(site_access("aggregate"))]
Manage = Annotated[SiteContext, Depends(site_access("manage"))]


@router.get(
    "/sites",
    operation_id="list_sites",
    summary="the factories this token may see",
    response_model=list[SiteOut],
)
def sites(request: Request, principal: PrincipalDep) -> list[SiteOut]:
    state = get_state(request)
    with state.session() as s:
        rows = list_sites(s)
    return [
        SiteOut(
            enterprise=r.enterprise,
            site=r.site,
            name=r.name,
            district=r.district,
            timezone=r.timezone,
        )
        for r in rows
        if principal.sees(r.site)
    ]


def _tree(model: SiteModel) -> SiteTree:
    base = f"{model.enterprise}/{model.site}"
    areas = []
    for area in model.areas:
        lines = []
        for line in area.lines:
            machines = [
                AssetNode(
                    id=m.id,
                    level="machine",
                    path=f"{base}/{area.id}/{line.id}/{m.id}",
                    attributes={
                        "type": m.type,
                        "profile": model.machine_types[m.type].profile.value,
                        "key_process": m.key_process,
                        "nc_controlled": m.nc_controlled,
                        "networked": m.networked,
                        "calendar": m.calendar or line.calendar,
                    },
                )
                for m in line.machines
            ]
            lines.append(
                AssetNode(
                    id=line.id,
                    name=line.name,
                    level="line",
                    path=f"{base}/{area.id}/{line.id}",
                    children=machines,
                    attributes={"calendar": line.calendar},
                )
            )
        areas.append(
            AssetNode(
                id=area.id, name=area.name, level="area", path=f"{base}/{area.id}", children=lines
            )
        )
    return SiteTree(
        enterprise=model.enterprise,
        site=model.site,
        name=model.name,
        district=model.district,
        timezone=model.timezone,
        areas=areas,
    )


@router.get(
    "/sites/{site}",
    operation_id="get_site",
    summary="a site with its areas, lines and machines",
    response_model=SiteTree,
    openapi_extra={"x-zhizao-policy": "aggregate"},
)
def get_site(ctx: Aggregate) -> SiteTree:
    return _tree(ctx.model)


@router.get(
    "/sites/{site}/model",
    operation_id="get_site_model",
    summary="the site model (the same schema as site.yaml)",
    openapi_extra={"x-zhizao-policy": "manage"},
)
def get_site_model(ctx: Manage) -> dict[str, Any]:
    return ctx.model.model_dump(mode="json")


@router.put(
    "/sites/{site}/model",
    operation_id="put_site_model",
    summary="replace the site model (validated like site.yaml); reports what changed",
    openapi_extra={"x-zhizao-policy": "manage"},
)
def put_site_model(
    request: Request, ctx: Manage, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    try:
        model = SiteModel.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(
            422,
            detail=[
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False, include_context=False)
            ],
        ) from None
    if model.site != ctx.site or model.enterprise != ctx.model.enterprise:
        raise HTTPException(
            422,
            detail=[
                {
                    "loc": ["body", "site"],
                    "msg": f"the model describes {model.enterprise}/{model.site}, not "
                    f"{ctx.model.enterprise}/{ctx.site}; a site id cannot be changed here",
                    "type": "value_error",
                }
            ],
        )
    state = get_state(request)
    with state.session() as s:
        report = import_site(s, model)
        s.commit()
    state.forget_site(ctx.site)
    return {
        "site": report.site,
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
    }


@router.get(
    "/sites/{site}/reasons",
    operation_id="list_reasons",
    summary="the site's stop-reason tree",
    openapi_extra={"x-zhizao-policy": "aggregate"},
)
def reasons(ctx: Aggregate) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in ctx.model.reasons]
