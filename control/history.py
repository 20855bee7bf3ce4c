"""The system's recorded history, as the control service reads and writes it: config versions and the audit chain.

Applying a config is validated here first (field paths in the error), then the supervisor applies what it
can at once (strategies) and flags the rest for a restart; each applied config is stored, masked, as a new
version with who and why. The audit chain is read from the system's SQL store, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from adapters.secrets import redact
from control.configs import (
    check_ref,
    config_changes,
    mask_config,
    parse_config_text,
    pydantic_errors,
    unmask_config,
    version_out,
)
from control.problems import InvalidInput, NotAllowed, UnknownVersion
from control.transport import ActorLink


class HistoryLink(ActorLink):
    """Config versions and audit records; ``SystemClient`` adds the live operations on top."""

    async def config(self) -> dict[str, Any]:
        """The running config, secrets masked, with the stored version it is (if it is one)."""
        state = await self.config_state(fresh=True)
        current = state["config"]
        latest = await self._baseline(current)
        masked = mask_config(current)
        version = latest["version"] if (latest.get("content") or {}).get("config") == masked else None
        return {"version": version, "environment": current.get("environment", "PAPER"), "config": masked,
                "restart_required": state.get("restart_required", [])}

    async def _baseline(self, current: dict[str, Any]) -> dict[str, Any]:
        """The latest stored version; a fresh store first records the running config as version 1."""
        st = await self.store()
        latest = await asyncio.to_thread(st.get, None)
        if latest is not None:
            return latest
        # Two requests at once (the dashboard's first poll) must not both record version 1: check again
        # under a lock of this event loop (the CLI runs each call in a loop of its own).
        loop = asyncio.get_running_loop()
        held: tuple[Any, asyncio.Lock] | None = getattr(self, "_baseline_lock", None)
        if held is None or held[0] is not loop:
            held = (loop, asyncio.Lock())
            self._baseline_lock = held
        async with held[1]:
            latest = await asyncio.to_thread(st.get, None)
            if latest is None:
                latest = await asyncio.to_thread(st.save, mask_config(current), "system", "running config at start",
                                                 [])
        return latest

    @staticmethod
    def validate_config(body: dict[str, Any]) -> dict[str, Any]:
        from mmats.system_config import SystemConfig

        try:
            SystemConfig.model_validate(body)
        except PydanticValidationError as exc:
            return {"valid": False, "errors": pydantic_errors(exc, "config.")}
        return {"valid": True, "errors": []}

    async def apply_config(self, new: dict[str, Any], author: str, comment: str) -> dict[str, Any]:
        """Validate, apply (strategy changes at once, the rest flagged for a restart) and record a version."""
        from mmats.system_config import SystemConfig

        current = (await self.config_state(fresh=True))["config"]
        await self._baseline(current)
        try:
            validated = SystemConfig.model_validate(unmask_config(new, current)).model_dump(mode="json")
        except PydanticValidationError as exc:
            errors = pydantic_errors(exc, "config.")
            raise InvalidInput(f"{errors[0]['loc']}: {errors[0]['msg']}", errors=errors) from None
        for s in validated.get("strategies", []):
            if s["id"] not in {x["id"] for x in current.get("strategies", [])}:
                check_ref(s["ref"])
        changes = config_changes(current, validated)
        res = await self.call(self.sup().apply_config.remote(validated), timeout=120)
        await self.handles(fresh=True)
        now_cfg = (await self.config_state(fresh=True))["config"]
        rec = await asyncio.to_thread((await self.store()).save, mask_config(now_cfg), author, comment, changes)
        self.logs.add("WARNING", "config", f"config version {rec['version']} by {author}: "
                                           f"{'; '.join(changes) or 'no change'}")
        return {"version": rec["version"], "time": rec["time"], "author": author, "comment": comment,
                "changes": changes, "applied": res.get("applied", []),
                "restart_required": res.get("restart_required", [])}

    async def config_history(self) -> list[dict[str, Any]]:
        """Versions, newest first."""
        await self._baseline((await self.config_state(fresh=True))["config"])
        rows = [version_out(r) for r in await asyncio.to_thread((await self.store()).list)]
        return rows[::-1]

    async def _version(self, version: int) -> dict[str, Any]:
        rec = await asyncio.to_thread((await self.store()).get, version)
        if rec is None:
            raise UnknownVersion(f"no config version {version}")
        return rec

    async def config_version(self, version: int) -> dict[str, Any]:
        return version_out(await self._version(version), full=True)

    async def rollback(self, version: int, author: str, comment: str) -> dict[str, Any]:
        """Re-apply an older version, recorded as a new one."""
        content = ((await self._version(version)).get("content") or {}).get("config")
        if not isinstance(content, dict):
            raise NotAllowed(f"config version {version} holds no configuration")
        return await self.apply_config(content, author, comment or f"rollback to version {version}")

    async def export_config(self) -> dict[str, Any]:
        return dict(mask_config((await self.config_state(fresh=True))["config"]))

    async def import_config(self, fmt: str, content: str, author: str, comment: str) -> dict[str, Any]:
        return await self.apply_config(parse_config_text(fmt, content), author, comment)

    async def audit(self, from_seq: int | None, limit: int, kind: str | None) -> dict[str, Any]:
        """Records in chain order from ``from_seq`` (default: the latest ``limit``), payloads redacted."""
        storage = await self.audit_storage()

        def read() -> dict[str, Any]:
            from mmats.model import iso

            total = storage.audit_count()
            start = from_seq if from_seq is not None else max(1, total - limit + 1)
            items: list[dict[str, Any]] = []
            last = start - 1
            for rec in storage.audit_records(from_seq=start):
                last = rec.seq
                if kind and rec.kind != kind:
                    continue
                items.append({"seq": rec.seq, "time": iso(rec.ts_ns), "kind": rec.kind,
                              "payload": json.loads(redact(json.dumps(rec.payload))),
                              "prev_hash": rec.prev_hash, "hash": rec.hash})
                if len(items) >= limit:
                    break
            nxt = last + 1 if last < total and items else None
            return {"items": items, "total": total, "from_seq": start, "limit": limit, "next_from_seq": nxt}

        return await asyncio.to_thread(read)

    async def audit_verify(self) -> dict[str, Any]:
        v = await asyncio.to_thread((await self.audit_storage()).verify_audit)
        return {"ok": v.ok, "records": v.records, "first_bad_seq": v.first_bad_seq, "problem": v.problem,
                "head_hash": v.head_hash}
