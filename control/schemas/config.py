"""HTTP bodies: config."""

from typing import Any, Literal

from pydantic import ConfigDict, Field

from control.schemas.base import FieldError, Model

# ------------------------------------------------------------------------------------------ config


class ConfigOut(Model):
    version: int | None = Field(None, description="the stored version this config is, if any")
    environment: str
    config: dict[str, Any] = Field(description="secrets masked as ***")
    restart_required: list[str] = Field(default_factory=list, description="changed fields that apply on restart")


class ValidateOut(Model):
    valid: bool
    errors: list[FieldError] = Field(default_factory=list)


class ConfigUpdateIn(Model):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any]
    author: str = Field("api", min_length=1, max_length=100, description="who makes the change")
    comment: str = Field("", max_length=1000, description="why")


class ConfigImportIn(Model):
    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "yaml"] = "json"
    content: str = Field(min_length=1, max_length=1_000_000)
    author: str = Field("api", min_length=1, max_length=100)
    comment: str = Field("import", max_length=1000)


class RollbackIn(Model):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    author: str = Field("api", min_length=1, max_length=100)
    comment: str = Field("", max_length=1000)


class ConfigVersionOut(Model):
    version: int
    time: str
    author: str
    comment: str
    changes: list[str] = Field(default_factory=list)


class ConfigVersionFull(ConfigVersionOut):
    content: dict[str, Any]


class ConfigUpdateOut(Model):
    version: int
    time: str
    author: str
    comment: str
    changes: list[str]
    applied: list[str]
    restart_required: list[str]
