"""The config side of the control service: versions, masking of secrets, what changed, reference checks.

Versions live in the system's SQL store when it persists, else in the replica's memory; what is stored is
the masked config (a restore sends a masked secret back, ``unmask_config`` puts the running value in).
"""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from adapters.secrets import redact
from control.problems import InvalidInput, Refused
from mmats.model import iso

SECRET_KEYS = ("database_url", "redis_url")


def mask_config(value: Any, key: str = "") -> Any:
    """Every string through ``redact``; connection URLs with their password masked."""
    if isinstance(value, dict):
        return {k: mask_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_config(v, key) for v in value]
    if isinstance(value, str):
        if key in SECRET_KEYS:
            from adapters.sql_engine import mask_url

            return mask_url(value) if "://" in value else redact(value)
        return redact(value)
    return value


def unmask_config(new: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A masked secret sent back unchanged (an export re-imported) keeps the running value."""
    out = dict(new)
    for k in SECRET_KEYS:
        v = out.get(k)
        if isinstance(v, str) and "***" in v and mask_config(current.get(k), k) == v:
            out[k] = current.get(k)
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed, in words: top-level fields and strategies by id."""
    changes: list[str] = []
    for k in sorted(set(old) | set(new)):
        if k == "strategies":
            continue
        if old.get(k) != new.get(k):
            changes.append(f"{k}: changed" if k in old and k in new else f"{k}: {'added' if k in new else 'removed'}")
    so = {s.get("id"): s for s in old.get("strategies", []) if isinstance(s, dict)}
    sn = {s.get("id"): s for s in new.get("strategies", []) if isinstance(s, dict)}
    for sid in sorted(set(so) | set(sn), key=str):
        if sid not in sn:
            changes.append(f"strategies.{sid}: removed")
        elif sid not in so:
            changes.append(f"strategies.{sid}: added")
        elif so[sid] != sn[sid]:
            keys = sorted(k for k in set(so[sid]) | set(sn[sid]) if so[sid].get(k) != sn[sid].get(k))
            changes.append(f"strategies.{sid}: {', '.join(keys)} changed")
    return changes


def pydantic_errors(exc: PydanticValidationError, prefix: str = "") -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        out.append({"loc": f"{prefix}{loc}" if loc else prefix.rstrip(".") or "body", "msg": err.get("msg", "")})
    return out


def parse_config_text(fmt: str, content: str) -> dict[str, Any]:
    """An uploaded config file's text (``json`` or ``yaml``) as a mapping; what is wrong, with where."""
    import yaml

    try:
        data = json.loads(content) if fmt == "json" else yaml.safe_load(content)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"content: not valid {fmt}: {first}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"content: a {fmt} mapping (object) is expected")
    return data


def check_strategy_source(source: str, class_name: str) -> None:
    """Syntax and class presence, without executing anything in the API process."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise Refused(f"source: syntax error at line {exc.lineno}: {exc.msg}") from None
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    if class_name not in names:
        raise Refused(f"source: no class {class_name!r} in the file (classes: {sorted(names) or 'none'})")


def check_ref(ref: str) -> None:
    """Reject references that cannot load, before an actor is started for them."""
    from mmats.registry import BUILTIN

    target = BUILTIN.get(ref, ref)
    if ":" not in target:
        raise Refused(f"ref: unknown strategy {ref!r}: use one of {', '.join(sorted(BUILTIN))}, "
                      "path/to/file.py:ClassName or package.module:ClassName")
    where, _, cls = target.rpartition(":")
    if not where or not cls.isidentifier():
        raise Refused(f"ref: {ref!r} is not path/to/file.py:ClassName or package.module:ClassName")
    if where.endswith(".py") and not Path(where).is_file():
        raise Refused(f"ref: strategy file not found: {where}")


class ConfigStore:
    """Versions of the config: in the system's SQL store when it persists, else in this replica's memory."""

    def __init__(self, persist: dict[str, Any] | None) -> None:
        self.storage: Any = None
        self.memory: list[dict[str, Any]] = []
        if persist is not None:
            from actors.stores import open_stores

            self.storage = open_stores(persist).storage

    def save(self, content: dict[str, Any], author: str, comment: str, changes: list[str]) -> dict[str, Any]:
        body = {"config": content, "changes": changes}
        if self.storage is not None:
            return dict(self.storage.save_config_version(body, author, comment).to_dict())
        rec = {"version": len(self.memory) + 1, "time": iso(datetime.now(UTC)), "author": author,
               "comment": comment, "content": body}
        self.memory.append(rec)
        return rec

    def list(self) -> list[dict[str, Any]]:
        if self.storage is not None:
            return [v.to_dict() for v in self.storage.list_config_versions()]
        return list(self.memory)

    def get(self, version: int | None) -> dict[str, Any] | None:
        if self.storage is not None:
            v = self.storage.get_config_version(version)
            return None if v is None else dict(v.to_dict())
        if not self.memory:
            return None
        if version is None:
            return self.memory[-1]
        return next((r for r in self.memory if r["version"] == version), None)


def version_out(rec: dict[str, Any], full: bool = False) -> dict[str, Any]:
    content = rec.get("content") or {}
    out = {"version": rec["version"], "time": rec["time"], "author": rec["author"], "comment": rec.get("comment", ""),
           "changes": list(content.get("changes", []))}
    if full:
        out["content"] = content.get("config", content)
    return out

