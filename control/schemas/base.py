"""The HTTP API's bodies: what each endpoint takes and answers (the OpenAPI schema is generated from these).

Inputs forbid unknown fields and bound every string and list, so a malformed request is refused with the
field's path before anything runs; outputs ignore extra keys the actors may add.
"""

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FieldError(Model):
    loc: str = Field(description="where: body.strategies.0.symbols, query.limit, ...")
    msg: str


class Problem(Model):
    """RFC 9457 problem details: ``detail`` says what went wrong and where, in words."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    error_id: str | None = Field(None, description="quote it when reporting an internal error")


T = TypeVar("T")


class Page(Model, Generic[T]):
    items: list[T]
    total: int = Field(description="items matching the filters")
    offset: int
    limit: int
    next_offset: int | None = Field(None, description="offset of the next page, null on the last one")


Market = Literal["crypto", "forex", "stock"]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Symbol = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_./:-]+$")]
ConfirmToken = Annotated[str, Field(max_length=200, pattern=r"^[A-Za-z0-9_-]*$")]
