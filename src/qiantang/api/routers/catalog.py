"""`/templates` and `/products`: thing models, as our JSON and as Alibaba TSL JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from qiantang.api.deps import Caller, Db, Runtime, RuntimeDep
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import (
    PageOut,
    ProductIn,
    ProductOut,
    ProductPatch,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
)
from qiantang.services import products as psvc
from qiantang.services import templates as tsvc
from qiantang.services.thing_models import tsl_of

router = APIRouter()


def _model_changed(rt: Runtime, product_id: int) -> None:
    """The ingest path compiles the product's new model on its next message."""
    if rt.telemetry is not None:
        rt.telemetry.models.invalidate(product_id)


@router.get("/templates", tags=["templates"])
def list_templates(
    db: Db, who: Caller, platform_id: int | None = None, limit: Limit = 50, offset: Offset = 0
) -> PageOut[TemplateOut]:
    """Templates published at or above your platforms and enterprises."""
    page = tsvc.list_templates(db, who, platform_id=platform_id, limit=limit, offset=offset)
    items = [TemplateOut.model_validate(t) for t in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("/templates", status_code=201, tags=["templates"])
def create_template(body: TemplateIn, db: Db, who: Caller) -> TemplateOut:
    """Publish a template at a platform you operate."""
    return TemplateOut.model_validate(tsvc.create_template(db, who, **body.model_dump()))


@router.get("/templates/{template_id}", tags=["templates"])
def get_template(template_id: int, db: Db, who: Caller) -> TemplateOut:
    """One template."""
    return TemplateOut.model_validate(tsvc.get_template(db, who, template_id))


@router.get("/templates/{template_id}/tsl", tags=["templates"])
def get_template_tsl(template_id: int, db: Db, who: Caller) -> dict[str, Any]:
    """The template's model as Alibaba TSL JSON."""
    template = tsvc.get_template(db, who, template_id)
    return tsl_of(template.thing_model, f"template-{template.id}")


@router.patch("/templates/{template_id}", tags=["templates"])
def update_template(template_id: int, body: TemplatePatch, db: Db, who: Caller) -> TemplateOut:
    """Change a template."""
    change = tsvc.TemplateChange(**body.model_dump(exclude_unset=True))
    return TemplateOut.model_validate(tsvc.update_template(db, who, template_id, change))


@router.delete("/templates/{template_id}", status_code=204, tags=["templates"])
def delete_template(template_id: int, db: Db, who: Caller) -> Response:
    """Withdraw a template."""
    tsvc.delete_template(db, who, template_id)
    return Response(status_code=204)


@router.get("/products", tags=["products"])
def list_products(
    db: Db, who: Caller, enterprise_id: int | None = None, limit: Limit = 50, offset: Offset = 0
) -> PageOut[ProductOut]:
    """Your enterprises' products."""
    page = psvc.list_products(db, who, enterprise_id=enterprise_id, limit=limit, offset=offset)
    items = [ProductOut.model_validate(p) for p in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("/products", status_code=201, tags=["products"])
def create_product(body: ProductIn, db: Db, who: Caller) -> ProductOut:
    """A product from our JSON, from TSL JSON, or from a template."""
    return ProductOut.model_validate(psvc.create_product(db, who, **body.model_dump()))


@router.get("/products/{product_id}", tags=["products"])
def get_product(product_id: int, db: Db, who: Caller) -> ProductOut:
    """One product."""
    return ProductOut.model_validate(psvc.get_product(db, who, product_id))


@router.get("/products/{product_id}/thing-model", tags=["products"])
def get_thing_model(product_id: int, db: Db, who: Caller) -> dict[str, Any]:
    """The product's model as our JSON."""
    return dict(psvc.get_product(db, who, product_id).thing_model)


@router.get("/products/{product_id}/tsl", tags=["products"])
def get_tsl(product_id: int, db: Db, who: Caller) -> dict[str, Any]:
    """The product's model as Alibaba TSL JSON."""
    product = psvc.get_product(db, who, product_id)
    return tsl_of(product.thing_model, product.product_key)


@router.put("/products/{product_id}/tsl", tags=["products"])
def put_tsl(
    product_id: int, db: Db, who: Caller, rt: RuntimeDep, tsl: Annotated[dict[str, Any], Body()]
) -> ProductOut:
    """Replace the product's model from TSL JSON (bumps the model version)."""
    change = psvc.ProductChange(tsl=tsl)
    product = psvc.update_product(db, who, product_id, change)
    _model_changed(rt, product_id)
    return ProductOut.model_validate(product)


@router.patch("/products/{product_id}", tags=["products"])
def update_product(
    product_id: int, body: ProductPatch, db: Db, who: Caller, rt: RuntimeDep
) -> ProductOut:
    """Change a product."""
    change = psvc.ProductChange(**body.model_dump(exclude_unset=True))
    product = psvc.update_product(db, who, product_id, change)
    _model_changed(rt, product_id)
    return ProductOut.model_validate(product)


@router.delete("/products/{product_id}", status_code=204, tags=["products"])
def delete_product(product_id: int, db: Db, who: Caller) -> Response:
    """Delete a product with no devices."""
    psvc.delete_product(db, who, product_id)
    return Response(status_code=204)
