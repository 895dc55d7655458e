"""What the commands share: the consoles, the ops key and router options, and calls to a
service that exit saying what it answered."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.text import Text

from cli.settings import CliSettings

out = Console()
err = Console(stderr=True)

KeyOption = Annotated[
    str | None, typer.Option("--key", envvar="SWITCHBOARD_OPS_KEY", help="an ops API key")
]
RouterOption = Annotated[
    str | None, typer.Option("--router", help="router base URL (SWITCHBOARD_ROUTER_URL)")
]


def _fail(message: str) -> typer.Exit:
    # Printed as it is: not wrapped (lines stay whole for grep), brackets not read as markup.
    err.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)
    return typer.Exit(1)


def _client(base_url: str, key: str | None, settings: CliSettings) -> httpx.Client:
    key = key or settings.ops_key
    if not key:
        raise _fail("no API key: pass --key or set SWITCHBOARD_OPS_KEY")
    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=settings.timeout_s,
    )


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer of a call, or exit saying what the service answered."""
    answer = _answer(client, method, path, **kwargs)
    return answer.json() if answer.content else None


def _answer(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """The answer of a call, or exit saying what the service answered."""
    try:
        answer = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise _fail(f"{method} {client.base_url}{path}: {exc}") from exc
    if answer.is_error:
        try:
            detail = answer.json().get("detail", answer.text)
        except ValueError:
            detail = answer.text
        raise _fail(f"{method} {path} answered {answer.status_code}: {detail}")
    return answer


def _every_page(client: httpx.Client, path: str) -> list[Any]:
    """Every item of a paged list, following its ``Link: <...>; rel="next"`` headers."""
    items: list[Any] = []
    url: str | None = path
    while url is not None:
        answer = _answer(client, "GET", url)
        items += answer.json()
        url = answer.links.get("next", {}).get("url")
    return items
