"""Email: raw RFC 5322/MIME messages (``message/rfc822``) and the multipart/form-data "inbound
parse" shape email providers post. Threads by Message-ID / In-Reply-To / References, prefers
text/plain over HTML, decodes every charset, keeps attachments as metadata, strips quoted
replies and signatures from the text used for routing, and opens nothing for auto-replies."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

from services.ingest.channels.base import Incoming, UnstorableText
from shared.events import Attachment, Channel, Customer
from shared.textguard import unstorable_text

# Labels mail clients use, mapped to the codec that decodes what they really send
# (GB2312-labelled mail often contains GBK characters; Big5 mail HKSCS ones; Shift_JIS, cp932).
_CODECS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb18030": "gb18030",
    "big5": "big5hkscs",
    "big5-hkscs": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "euc-jp": "euc_jp",
}
_AUTO_FROM = re.compile(r"^(mailer-daemon|postmaster|no-?reply|bounces?)@", re.IGNORECASE)
_QUOTE_HEADERS = re.compile(
    r"^(On .{4,200} wrote:|-{2,}\s*Original Message\s*-{2,}|From:\s.+|发件人[:：].*|"
    r"在.{2,100}写道[:：]|差出人[:：].*|.{2,100}님이 작성[:：]?|寄件者[:：].*)\s*$",
)


class NotAnEmail(ValueError):
    """The body is not a message we can read."""


class AutoReply(Exception):
    """An auto-reply or bounce: accepted and ignored, never a conversation."""


def parse_raw(raw: bytes) -> Incoming:
    """An RFC 5322 message as an incoming email, or AutoReply."""
    if not raw.strip():
        raise NotAnEmail("empty message")
    msg = message_from_bytes(raw, policy=policy.default)
    if not isinstance(msg, EmailMessage) or not msg.keys():
        raise NotAnEmail("no headers")
    return _incoming(msg, raw)


def parse_inbound_form(content_type: str, body: bytes) -> Incoming:
    """The multipart/form-data shape of email providers' inbound parse webhooks: either the
    whole raw message in an ``email`` field, or ``headers``, ``from``, ``subject``, ``text``,
    ``html`` (with their ``charsets``) and attachment files."""
    fields, files = _form_fields(content_type, body)
    if "email" in fields:
        return parse_raw(fields["email"])
    charsets = json.loads(_text(fields.get("charsets", b"{}"), "utf-8") or "{}")
    if not isinstance(charsets, dict) or not all(isinstance(v, str) for v in charsets.values()):
        raise NotAnEmail("charsets is not a JSON object of field names and charsets")

    def field(name: str) -> str | None:
        value = fields.get(name)
        return None if value is None else _text(value, charsets.get(name, "utf-8"))

    headers = field("headers") or ""
    for name in ("from", "subject", "to"):
        value = field(name)
        if value and name.lower() + ":" not in headers.lower():
            headers += f"\n{name.title()}: {value}"
    msg = message_from_bytes(headers.strip().encode() + b"\n\n", policy=policy.default)
    assert isinstance(msg, EmailMessage)
    text = field("text") or html_to_text(field("html") or "")
    return _incoming(msg, body, body_text=text, attachments=files, body_label="the text field")


def _form_fields(content_type: str, body: bytes) -> tuple[dict[str, bytes], list[Attachment]]:
    if "multipart/form-data" not in content_type:
        raise NotAnEmail("expected multipart/form-data or message/rfc822")
    envelope = message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=policy.compat32
    )
    if not envelope.is_multipart():
        raise NotAnEmail("the multipart body has no parts")
    fields: dict[str, bytes] = {}
    files: list[Attachment] = []
    for part in envelope.get_payload():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
        filename = part.get_filename()
        if filename:
            files.append(
                Attachment(name=filename, content_type=part.get_content_type(), size=len(payload))
            )
        elif isinstance(name, str):
            fields[name] = payload
    if not fields and not files:
        raise NotAnEmail("the form has no fields")
    return fields, files


def _incoming(
    msg: EmailMessage,
    raw: bytes,
    *,
    body_text: str | None = None,
    attachments: list[Attachment] | None = None,
    body_label: str = "the decoded body",
) -> Incoming:
    if is_auto_reply(msg):
        raise AutoReply(str(msg.get("Message-ID", "")))
    check_headers(msg)
    senders = getaddresses([str(msg.get("From", ""))])
    name, address = senders[0] if senders else ("", "")
    if not address or "@" not in address:
        raise NotAnEmail("the message has no From address")
    message_id = _angle(str(msg.get("Message-ID", ""))) or hashlib.sha256(raw).hexdigest()
    references = _ids(str(msg.get("References", "")))
    in_reply_to = _ids(str(msg.get("In-Reply-To", "")))
    thread_root = (references or in_reply_to or [message_id])[0]
    subject = str(msg.get("Subject", "")).strip() or None
    text = body_text if body_text is not None else body_of(msg)
    check_storable(text, body_label)
    files = attachments if attachments is not None else attachments_of(msg)
    for i, attachment in enumerate(files):
        check_storable(attachment.name or "", f"the name of attachment {i + 1}")
    if not text.strip():
        text = " ".join(f"[{a.name or a.content_type}]" for a in files) or "(empty message)"
    sent_at = None
    if msg.get("Date"):
        try:
            sent_at = parsedate_to_datetime(str(msg["Date"]))
        except (TypeError, ValueError):
            sent_at = None
        if sent_at is not None and sent_at.tzinfo is None:
            sent_at = None
    routing = strip_quotes_and_signature(text)
    return Incoming(
        channel=Channel.EMAIL,
        channel_message_id=message_id,
        conversation_ref=thread_root,
        customer=Customer(id=f"email:{address.lower()}", name=name or None),
        text=text,
        sent_at=sent_at,
        attachments=files,
        subject=subject,
        text_for_language=routing,
        text_for_routing="\n".join(p for p in (subject, routing) if p),
    )


def check_headers(msg: EmailMessage) -> None:
    """UnstorableText if a header decodes (MIME words, any charset) to text PostgreSQL refuses."""
    for name in dict.fromkeys(msg.keys()):
        try:
            values = [str(v) for v in msg.get_all(name, [])]
        except UnicodeError as exc:  # the email package fails on a decoded lone surrogate
            raise UnstorableText(
                f"the {name} header decodes to an unpaired UTF-16 surrogate, which cannot be stored"
            ) from exc
        for value in values:
            check_storable(value, f"the {name} header")


def check_storable(text: str, where: str) -> None:
    """UnstorableText naming ``where`` if ``text`` holds NUL or a lone surrogate."""
    found = unstorable_text(text, where)
    if found:
        raise UnstorableText(f"{found} once decoded, which cannot be stored")


def is_auto_reply(msg: Message) -> bool:
    """RFC 3834 Auto-Submitted, the common X- headers, bulk precedence, bounces."""
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(msg.get("Precedence", "")).strip().lower()
    sender = getaddresses([str(msg.get("From", ""))])
    return (
        auto != "no"
        or any(h in msg for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"))
        or precedence in {"bulk", "junk", "auto_reply", "list"}
        or msg.get_content_type() == "multipart/report"
        or bool(sender and _AUTO_FROM.match(sender[0][1] or ""))
    )


def body_of(msg: EmailMessage) -> str:
    """text/plain if there is one, else the HTML converted to text."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = decode_part(part)
    return html_to_text(text) if part.get_content_type() == "text/html" else text


def decode_part(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return _text(payload, part.get_content_charset() or "utf-8")


def _text(payload: bytes, charset: str) -> str:
    """Decoded text with plain newlines (mail travels with CRLF)."""
    codec = _CODECS.get(charset.lower(), charset.lower())
    try:
        text = payload.decode(codec, errors="replace")
    except LookupError:  # an unknown label: UTF-8 is the best guess left
        text = payload.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def attachments_of(msg: EmailMessage) -> list[Attachment]:
    """Every part that is not the body: files, and inline images at any depth (an image in
    multipart/related inside multipart/alternative too), each with its Content-ID as ref."""
    body = msg.get_body(preferencelist=("plain", "html"))
    out = []
    for part in _leaves(msg):
        if part is body or part is msg:
            continue
        if (
            part.get_content_type() in ("text/plain", "text/html")
            and part.get_content_disposition() != "attachment"
            and not part.get_filename()
        ):
            continue  # the body's other alternative
        payload = part.get_payload(decode=True)
        content_id = str(part.get("Content-ID", "")).strip()
        out.append(
            Attachment(
                name=part.get_filename(),
                content_type=part.get_content_type(),
                size=len(payload) if isinstance(payload, bytes) else None,
                ref=f"cid:{content_id.strip('<>')}" if content_id else None,
                kind="inline" if part.get_content_disposition() != "attachment" else None,
            )
        )
    return out


def _leaves(part: Message) -> Iterator[Message]:
    """The parts that are not containers; an attached message (message/rfc822) is one part."""
    if not part.is_multipart() or part.get_content_type() == "message/rfc822":
        yield part
        return
    for sub in part.get_payload():
        if isinstance(sub, Message):
            yield from _leaves(sub)


class _HtmlText(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote", "table"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(self._skip - 1, 0)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def strip_quotes_and_signature(text: str) -> str:
    """The new part of a reply: no quoted lines, no quoted earlier message, no signature."""
    kept = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped in ("--", "-- ", "__") or line == "-- ":
            break  # the signature delimiter (RFC 3676) and everything after it
        if _attribution(stripped, lines[i + 1 : i + 3]):
            break  # "On ... wrote:" and the quoted message below it
        if stripped.startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _attribution(line: str, following: list[str]) -> bool:
    """Whether ``line`` starts a quote attribution, alone or wrapped over the next line or two
    (Gmail wraps "On Mon, ... Mei Chen <" / "mei@example.com> wrote:")."""
    if _QUOTE_HEADERS.match(line):
        return True
    if not line or line.startswith(">"):
        return False
    joined = line
    for more in following:
        more = more.strip()
        if not more or more.startswith(">"):
            return False
        joined += ("" if joined.endswith("<") else " ") + more
        if _QUOTE_HEADERS.match(joined) and not _QUOTE_HEADERS.match(more):
            return True
    return False


def _angle(value: str) -> str:
    found = _ids(value)
    return found[0] if found else value.strip()


def _ids(value: str) -> list[str]:
    return re.findall(r"<([^<>\s]+)>", value)
