"""`/auth`, `/me`, `/users` and `/api-keys`: who is calling and what they may do."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from qiantang.api.deps import Caller, Db, RuntimeDep
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    BindingIn,
    BindingOut,
    LoginIn,
    LoginOut,
    PageOut,
    UserIn,
    UserOut,
    UserPatch,
)
from qiantang.services import api_keys as ksvc
from qiantang.services import users as usvc
from qiantang.services.auth import login

router = APIRouter()


@router.post("/auth/login", tags=["auth"])
def post_login(body: LoginIn, db: Db, rt: RuntimeDep) -> LoginOut:
    """Exchange a username and password for a session token."""
    token, session = login(db, body.username, body.password, rt.settings.session_hours)
    assert session.expires_at is not None
    return LoginOut(token=token, expires_at=session.expires_at)


@router.get("/me", tags=["auth"])
def me(who: Caller) -> dict[str, Any]:
    """The caller and its roles."""
    return {
        "user_id": who.user_id,
        "username": who.username,
        "platform_roles": [{"platform_id": p, "role": r} for p, r in who.platform_roles.items()],
        "enterprise_roles": [
            {"enterprise_id": e, "role": r} for e, r in who.enterprise_roles.items()
        ],
    }


@router.get("/users", tags=["users"])
def list_users(db: Db, who: Caller, limit: Limit = 50, offset: Offset = 0) -> PageOut[UserOut]:
    """Users you are or manage."""
    page = usvc.list_users(db, who, limit=limit, offset=offset)
    items = [UserOut.model_validate(u) for u in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("/users", status_code=201, tags=["users"])
def create_user(body: UserIn, db: Db, who: Caller) -> UserOut:
    """A user with a first role at a node you manage."""
    spec = usvc.BindingSpec(body.role, body.platform_id, body.enterprise_id)
    user = usvc.create_user(
        db,
        who,
        username=body.username,
        password=body.password,
        display_name=body.display_name,
        binding=spec,
    )
    return UserOut.model_validate(user)


@router.get("/users/{user_id}", tags=["users"])
def get_user(user_id: int, db: Db, who: Caller) -> UserOut:
    """One user."""
    return UserOut.model_validate(usvc.get_user(db, who, user_id))


@router.patch("/users/{user_id}", tags=["users"])
def update_user(user_id: int, body: UserPatch, db: Db, who: Caller) -> UserOut:
    """Change a display name or password."""
    change = usvc.UserChange(**body.model_dump(exclude_unset=True))
    return UserOut.model_validate(usvc.update_user(db, who, user_id, change))


@router.delete("/users/{user_id}", status_code=204, tags=["users"])
def delete_user(user_id: int, db: Db, who: Caller) -> Response:
    """Delete a user whose roles you all manage."""
    usvc.delete_user(db, who, user_id)
    return Response(status_code=204)


@router.get("/users/{user_id}/bindings", tags=["users"])
def list_bindings(user_id: int, db: Db, who: Caller) -> list[BindingOut]:
    """A user's roles."""
    return [BindingOut.model_validate(b) for b in usvc.list_bindings(db, who, user_id)]


@router.post("/users/{user_id}/bindings", status_code=201, tags=["users"])
def add_binding(user_id: int, body: BindingIn, db: Db, who: Caller) -> BindingOut:
    """Give a user another role."""
    spec = usvc.BindingSpec(body.role, body.platform_id, body.enterprise_id)
    return BindingOut.model_validate(usvc.add_binding(db, who, user_id, spec))


@router.delete("/users/{user_id}/bindings/{binding_id}", status_code=204, tags=["users"])
def remove_binding(user_id: int, binding_id: int, db: Db, who: Caller) -> Response:
    """Take a role away."""
    usvc.remove_binding(db, who, user_id, binding_id)
    return Response(status_code=204)


@router.get("/api-keys", tags=["api keys"])
def list_api_keys(db: Db, who: Caller, limit: Limit = 50, offset: Offset = 0) -> PageOut[ApiKeyOut]:
    """Your API keys."""
    page = ksvc.list_api_keys(db, who, limit=limit, offset=offset)
    items = [ApiKeyOut.model_validate(k) for k in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("/api-keys", status_code=201, tags=["api keys"])
def create_api_key(body: ApiKeyIn, db: Db, who: Caller) -> ApiKeyCreated:
    """A new API key; its token is shown this once."""
    key, token = ksvc.create_api_key(db, who, body.name)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), token=token)


@router.delete("/api-keys/{key_id}", status_code=204, tags=["api keys"])
def revoke_api_key(key_id: int, db: Db, who: Caller) -> Response:
    """Revoke one of your keys at once."""
    ksvc.revoke_api_key(db, who, key_id)
    return Response(status_code=204)
