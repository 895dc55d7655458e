"""``switchboard keys``: API keys managed at run time through the router (create, list,
rotate, revoke), or an entry for SWITCHBOARD_API_KEYS (``create --env``) to bootstrap a desk."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from cli.calls import KeyOption, RouterOption, _call, _client, _every_page, _fail, out
from cli.settings import CliSettings
from shared.auth import OPS, agent_scope, hash_key, is_known_scope, new_key

keys = typer.Typer(help="API keys: created, rotated and revoked at run time.")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def seconds(duration: str) -> int:
    """``90``, ``90s``, ``15m``, ``12h`` or ``30d`` in seconds."""
    found = re.fullmatch(r"(\d+)([smhd]?)", duration.strip())
    if not found:
        raise _fail(f"not a duration: {duration!r} (e.g. 90s, 15m, 12h, 30d)")
    return int(found[1]) * _UNITS[found[2] or "s"]


def _when(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _shown(answer: dict[str, Any]) -> None:
    """A key as issued: in clear once, then what it is."""
    typer.echo(f"key (shown once): {answer['key']}")
    expiry = f", expires {_when(answer['expires_at'])}" if answer["expires_at"] else ""
    typer.echo(f"id {answer['id']}: {answer['name']} ({' '.join(answer['scopes'])}){expiry}")


def _key_id(client: httpx.Client, ref: str) -> str:
    """The id of the live key ``ref`` (an id, or a live key's name)."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    for found in _every_page(client, "/v1/keys"):
        if found["name"] == ref:
            return str(found["id"])
    raise _fail(f"no live key named {ref!r}")


@keys.command("create")
def create_key(
    name: str,
    scope: Annotated[
        list[str] | None, typer.Option(help="ops (default), ingest or agent:<id>; repeatable")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="it stops working after this long (90s, 15m, 12h, 30d)")
    ] = None,
    env: Annotated[
        bool,
        typer.Option(
            "--env", help="print an entry for SWITCHBOARD_API_KEYS instead (no service called)"
        ),
    ] = False,
    key: KeyOption = None,
    router: RouterOption = None,
) -> None:
    """A new random API key, printed once in clear: stored (as a digest) through the router,
    taken up by every service within seconds; or, with --env, with the entry (its SHA-256
    digest only) to add to SWITCHBOARD_API_KEYS."""
    scope = scope or [OPS]
    for s in scope:
        if not is_known_scope(s):
            raise _fail(f"unknown scope {s!r}: use ops, ingest or {agent_scope('<id>')}")
    if env:
        if expires_in is not None:
            raise _fail("--expires-in applies to stored keys, not to --env entries")
        secret = new_key()
        typer.echo(f"key (shown once): {secret}")
        typer.echo(json.dumps({"name": name, "sha256": hash_key(secret), "scopes": scope}))
        return
    body: dict[str, Any] = {"name": name, "scopes": scope}
    if expires_in is not None:
        body["expires_in_s"] = seconds(expires_in)
    settings = CliSettings()
    with _client(router or settings.router_url, key, settings) as client:
        _shown(_call(client, "POST", "/v1/keys", json=body))


@keys.command("list")
def list_keys(
    revoked: Annotated[bool, typer.Option(help="also the revoked ones")] = False,
    key: KeyOption = None,
    router: RouterOption = None,
) -> None:
    """The stored keys: scopes, status, expiry and last use (never a key)."""
    settings = CliSettings()
    with _client(router or settings.router_url, key, settings) as client:
        found = _every_page(client, f"/v1/keys?revoked={str(revoked).lower()}")
    table = Table("id", "name", "scopes", "status", "created", "expires", "last used")
    for k in found:
        table.add_row(
            k["id"],
            k["name"],
            " ".join(k["scopes"]),
            k["status"],
            _when(k["created_at"]),
            _when(k["expires_at"]),
            _when(k["last_used_at"]),
        )
    out.print(table)


@keys.command("rotate")
def rotate_key(
    ref: Annotated[str, typer.Argument(metavar="KEY", help="the key's id or name")],
    grace: Annotated[
        str, typer.Option(help="how long the replaced key still works (0, 90s, 15m, 1d)")
    ] = "0",
    key: KeyOption = None,
    router: RouterOption = None,
) -> None:
    """A new secret for a stored key, printed once; the old one stops after --grace."""
    settings = CliSettings()
    with _client(router or settings.router_url, key, settings) as client:
        key_id = _key_id(client, ref)
        body = {"grace_s": seconds(grace)}
        _shown(_call(client, "POST", f"/v1/keys/{key_id}/rotate", json=body))


@keys.command("revoke")
def revoke_key(
    ref: Annotated[str, typer.Argument(metavar="KEY", help="the key's id or name")],
    key: KeyOption = None,
    router: RouterOption = None,
) -> None:
    """Revoke a stored key: every service refuses it within seconds."""
    settings = CliSettings()
    with _client(router or settings.router_url, key, settings) as client:
        key_id = _key_id(client, ref)
        found = _call(client, "DELETE", f"/v1/keys/{key_id}")
    out.print(f"revoked {found['name']} ({found['id']})")
