"""Config (versions, validation, rollback, import/export) and the audit chain."""

import json
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Body, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from control.routes.deps import API, READ, WRITE, Client, Limit, Offset, download, page
from control.schemas import (
    AuditPage,
    ConfigImportIn,
    ConfigOut,
    ConfigUpdateIn,
    ConfigUpdateOut,
    ConfigVersionFull,
    ConfigVersionOut,
    Page,
    RollbackIn,
    ValidateOut,
    VerifyOut,
)

router = APIRouter(prefix=API)


@router.get("/config", response_model=ConfigOut, tags=["config"], dependencies=READ,
            summary="The running configuration (secrets masked)")
async def get_config(client: Client) -> dict[str, Any]:
    return await client.config()


@router.post("/config/validate", response_model=ValidateOut, tags=["config"], dependencies=READ,
             summary="Validate a configuration without applying it")
async def validate_config(client: Client, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    return client.validate_config(body)


@router.put("/config", response_model=ConfigUpdateOut, tags=["config"], dependencies=WRITE,
            summary="Update: a new version (who, when, what); strategy changes apply at once")
async def put_config(client: Client, body: ConfigUpdateIn) -> dict[str, Any]:
    return await client.apply_config(body.config, body.author, body.comment)


@router.get("/config/history", response_model=Page[ConfigVersionOut], tags=["config"], dependencies=READ,
            summary="Config versions, newest first")
async def config_history(client: Client, offset: Offset = 0, limit: Limit = 100) -> dict[str, Any]:
    return page(await client.config_history(), offset, limit)


@router.get("/config/history/{version}", response_model=ConfigVersionFull, tags=["config"], dependencies=READ)
async def config_version(client: Client, version: Annotated[int, PathParam(ge=1, le=10_000_000)]) -> dict[str, Any]:
    return await client.config_version(version)


@router.post("/config/rollback", response_model=ConfigUpdateOut, tags=["config"], dependencies=WRITE,
             summary="Re-apply an older version (saved as a new version)")
async def rollback(client: Client, body: RollbackIn) -> dict[str, Any]:
    return await client.rollback(body.version, body.author, body.comment)


@router.get("/config/export", tags=["config"], dependencies=READ,
            summary="The running config as a JSON or YAML file (secrets masked)",
            responses={200: {"content": {"application/json": {"schema": {"type": "object"}},
                                         "application/yaml": {"schema": {"type": "object"}}}}})
async def export_config(client: Client, format: Literal["json", "yaml"] = "yaml") -> Response:
    masked = await client.export_config()
    if format == "json":
        return download(json.dumps(masked, indent=1), "application/json", "mmats-config.json")
    return download(yaml.safe_dump(masked, sort_keys=False), "application/yaml", "mmats-config.yaml")


@router.post("/config/import", response_model=ConfigUpdateOut, tags=["config"], dependencies=WRITE,
             summary="Import a JSON or YAML config file (validated, then applied as a new version)")
async def import_config(client: Client, body: ConfigImportIn) -> dict[str, Any]:
    return await client.import_config(body.format, body.content, body.author, body.comment)


@router.get("/audit", response_model=AuditPage, tags=["audit"], dependencies=READ,
            summary="Audit records in chain order (default: the latest `limit`)")
async def audit(client: Client, from_seq: Annotated[int | None, Query(ge=1, le=10**12)] = None, limit: Limit = 100,
                kind: Annotated[str | None, Query(max_length=40)] = None) -> dict[str, Any]:
    return await client.audit(from_seq, limit, kind)


@router.get("/audit/verify", response_model=VerifyOut, tags=["audit"], dependencies=READ,
            summary="Re-hash the whole chain and report the first damaged record")
async def audit_verify(client: Client) -> dict[str, Any]:
    return await client.audit_verify()
