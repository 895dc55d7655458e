"""The ``sh`` examples of a Markdown page, and their ``curl`` commands as httpx requests."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
PORTS = {"8001": "ingest", "8002": "router", "8003": "metrics"}


@dataclass
class Example:
    """One command of an ``sh`` block: where it is, its words, what it reads on stdin, and
    the answer documented right under it (a ``# {...}`` comment line), if any."""

    where: str  # "README.md:97"
    text: str
    argv: list[str]
    stdin: bytes | None = None
    documented_answer: str | None = None
    variables: set[str] = field(default_factory=set)


def sh_examples(page: str) -> list[Example]:
    """Every command of the page's ``sh`` blocks, continuation lines and quotes joined."""
    lines = (ROOT / page).read_text().splitlines()
    found: list[Example] = []
    in_block, buffer, start = False, "", 0
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            in_block, buffer = line.strip() == "```sh", ""
            continue
        if not in_block:
            continue
        if not buffer:
            if line.startswith("# {") and found:
                found[-1].documented_answer = line[2:]
                continue
            start = number
        buffer += line + "\n"
        if line.endswith(("\\", "|")):  # continued on the next line
            continue
        try:
            words = shlex.split(buffer.replace("\\\n", " "), comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if words:
            stdin = None
            if "|" in words:
                cut = words.index("|")
                source, words = words[:cut], words[cut + 1 :]
                if source[0] == "printf":  # the only producer the pages pipe from
                    stdin = source[1].encode().decode("unicode_escape").encode()
            found.append(
                Example(
                    where=f"{page}:{start}",
                    text=buffer.strip(),
                    argv=words,
                    stdin=stdin,
                    variables=set(re.findall(r"\$([A-Z_]+)", buffer)),
                )
            )
        buffer = ""
    return found


def curl_request(example: Example, urls: dict[str, str], env: dict[str, str]) -> httpx.Request:
    """The request a ``curl`` example sends: ``-X``, ``-H``, ``-d``/``--data-binary`` (``@-``
    reads the example's stdin), ``-F name=value``, and the URL, its localhost port mapped to
    the service's URL and ``$NAME`` to ``env``."""

    def expand(word: str) -> str:
        return re.sub(r"\$([A-Z_]+)", lambda m: env[m.group(1)], word)

    argv = [expand(w) for w in example.argv]
    assert argv[0] == "curl", example.text
    method, url, headers = None, None, {}
    body: bytes | None = None
    form: dict[str, tuple[None, str]] = {}
    words = iter(argv[1:])
    for word in words:
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data", "--data-binary"):
            data = next(words)
            body = example.stdin if data == "@-" else data.encode()
        elif word == "-F":
            name, _, value = next(words).partition("=")
            form[name] = (None, value)
        elif word.startswith("-"):
            raise AssertionError(f"{example.where}: curl option {word} is not translated")
        else:
            url = word
    assert url is not None, example.text
    match = re.match(r"^(?:https?://)?(?:localhost|127\.0\.0\.1):(\d+)(.*)$", url)
    assert match, f"{example.where}: {url} is not a local service"
    full = urls[PORTS[match.group(1)]] + match.group(2)
    method = method or ("POST" if body is not None or form else "GET")
    if form:
        return httpx.Request(method, full, headers=headers, files=form)
    return httpx.Request(method, full, headers=headers, content=body)


def cli_examples(page: str) -> list[Example]:
    """The ``switchboard`` commands of the page's ``sh`` blocks."""
    return [e for e in sh_examples(page) if e.argv[0] == "switchboard"]
