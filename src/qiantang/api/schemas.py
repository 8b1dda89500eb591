"""Request and response bodies of the REST API (field names in English, snake_case)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from qiantang.domain.access import Role
from qiantang.domain.platform import PlatformKind

__all__ = [
    "ApiKeyCreated",
    "ApiKeyIn",
    "ApiKeyOut",
    "BindingIn",
    "BindingOut",
    "DeviceCreated",
    "DeviceIn",
    "DeviceOut",
    "DevicePatch",
    "EnterpriseIn",
    "EnterpriseOut",
    "EnterprisePatch",
    "GrantIn",
    "GrantOut",
    "GrantPatch",
    "LoginIn",
    "LoginOut",
    "MembershipIn",
    "MembershipOut",
    "PageOut",
    "PlatformIn",
    "PlatformOut",
    "PlatformPatch",
    "ProductIn",
    "ProductOut",
    "ProductPatch",
    "TemplateIn",
    "TemplateOut",
    "TemplatePatch",
    "UserIn",
    "UserOut",
    "UserPatch",
]

T = TypeVar("T")
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=32)]
ShortText = Annotated[str, StringConstraints(max_length=64)]
Json = dict[str, Any]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    """One page of a list; `total` counts every match."""

    items: list[T]
    total: int
    limit: int
    offset: int


class PlatformIn(_In):
    """A new platform."""

    name: Name
    kind: PlatformKind
    parent_id: int | None = None
    code: Code | None = None
    description: Text = ""


class PlatformPatch(_In):
    """Changes to a platform."""

    name: Name | None = None
    description: Text | None = None
    parent_id: int | None = None


class PlatformOut(_Out):
    """A platform; `identifier` is its prefix."""

    id: int
    parent_id: int | None
    kind: PlatformKind
    code: str
    name: str
    description: str
    identifier: str = Field(validation_alias="prefix")
    created_at: datetime


class EnterpriseIn(_In):
    """A new enterprise."""

    name: Name
    credit_code: ShortText
    industry_code: ShortText
    region_code: ShortText
    home_platform_id: int
    code: Code | None = None


class EnterprisePatch(_In):
    """Changes to an enterprise; `retention_days` keeps telemetry that many days."""

    name: Name | None = None
    industry_code: ShortText | None = None
    region_code: ShortText | None = None
    retention_days: int | None = Field(default=None, ge=1, le=36500)


class EnterpriseOut(_Out):
    """An enterprise; `identifier` is its prefix."""

    id: int
    name: str
    credit_code: str
    industry_code: str
    region_code: str
    home_platform_id: int
    code: str
    identifier: str = Field(validation_alias="prefix")
    retention_days: int | None = None
    created_at: datetime


class MembershipIn(_In):
    """An enterprise joining a platform."""

    enterprise_id: int
    platform_id: int


class MembershipOut(_Out):
    """A membership."""

    id: int
    enterprise_id: int
    platform_id: int
    created_at: datetime


class GrantIn(_In):
    """Consent for a platform to read products (keys, or '*') and properties ([] = all)."""

    enterprise_id: int
    platform_id: int
    products: list[ShortText] = Field(max_length=1000)
    properties: list[ShortText] = Field(default_factory=list, max_length=1000)
    expires_at: datetime | None = None


class GrantPatch(_In):
    """Changes to a grant."""

    products: list[ShortText] | None = Field(default=None, max_length=1000)
    properties: list[ShortText] | None = Field(default=None, max_length=1000)
    expires_at: datetime | None = None


class GrantOut(_Out):
    """A grant; `active` is false once revoked or expired."""

    id: int
    enterprise_id: int
    platform_id: int
    products: list[str]
    properties: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    active: bool = False


class TemplateIn(_In):
    """A template: the model as our JSON (`thing_model`) or as TSL JSON (`tsl`)."""

    platform_id: int
    name: Name
    description: Text = ""
    category: ShortText = ""
    thing_model: Json | None = None
    tsl: Json | None = None


class TemplatePatch(_In):
    """Changes to a template."""

    name: Name | None = None
    description: Text | None = None
    category: ShortText | None = None
    thing_model: Json | None = None
    tsl: Json | None = None


class TemplateOut(_Out):
    """A template with its model as our JSON."""

    id: int
    platform_id: int
    name: str
    description: str
    category: str
    thing_model: Json
    created_at: datetime


class ProductIn(_In):
    """A product: a model as our JSON, as TSL JSON, or from a template (at most one)."""

    enterprise_id: int
    name: Name
    description: Text = ""
    node_type: ShortText = "device"
    thing_model: Json | None = None
    tsl: Json | None = None
    template_id: int | None = None


class ProductPatch(_In):
    """Changes to a product; a new model bumps `thing_model_version`."""

    name: Name | None = None
    description: Text | None = None
    thing_model: Json | None = None
    tsl: Json | None = None


class ProductOut(_Out):
    """A product with its model as our JSON."""

    id: int
    enterprise_id: int
    product_key: str
    identifier: str
    name: str
    description: str
    node_type: str
    template_id: int | None
    thing_model: Json
    thing_model_version: int
    created_at: datetime


class DeviceIn(_In):
    """A new device."""

    product_id: int
    device_name: ShortText
    nickname: Annotated[str, StringConstraints(max_length=128)] = ""


class DevicePatch(_In):
    """Changes to a device; `provision_product_id` (gateways): where devices the gateway
    announces are created (0: off)."""

    nickname: Annotated[str, StringConstraints(max_length=128)] | None = None
    enabled: bool | None = None
    provision_product_id: int | None = Field(default=None, ge=0)


class DeviceOut(_Out):
    """A device (never its secret)."""

    id: int
    enterprise_id: int
    product_id: int
    device_name: str
    identifier: str
    nickname: str
    enabled: bool
    is_gateway: bool
    provision_product_id: int | None = None
    firmware_versions: dict[str, Any] | None = None
    created_at: datetime


class DeviceCreated(DeviceOut):
    """A device with its secret: shown at creation and rotation only."""

    product_key: str
    device_secret: str


class UserIn(_In):
    """A new user and its first role (at a platform or at an enterprise)."""

    username: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{3,64}$")]
    password: Annotated[str, StringConstraints(max_length=256)]
    display_name: Annotated[str, StringConstraints(max_length=128)] = ""
    role: Role
    platform_id: int | None = None
    enterprise_id: int | None = None


class UserPatch(_In):
    """Changes to a user."""

    display_name: Annotated[str, StringConstraints(max_length=128)] | None = None
    password: Annotated[str, StringConstraints(max_length=256)] | None = None


class UserOut(_Out):
    """A user (never the password hash)."""

    id: int
    username: str
    display_name: str
    created_at: datetime


class BindingIn(_In):
    """A role at a platform or at an enterprise."""

    role: Role
    platform_id: int | None = None
    enterprise_id: int | None = None


class BindingOut(_Out):
    """A role binding."""

    id: int
    user_id: int
    role: Role
    platform_id: int | None
    enterprise_id: int | None
    created_at: datetime


class ApiKeyIn(_In):
    """A new API key for the caller."""

    name: Name


class ApiKeyOut(_Out):
    """An API key (never its secret)."""

    id: int
    name: str
    key_id: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """A new API key with its token: shown once."""

    token: str


class LoginIn(_In):
    """Username and password."""

    username: Annotated[str, StringConstraints(max_length=64)]
    password: Annotated[str, StringConstraints(max_length=256)]


class LoginOut(BaseModel):
    """A session token for the `Authorization: Bearer` header."""

    token: str
    expires_at: datetime
