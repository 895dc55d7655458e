"""Email through the real ingest app and broker: charsets, HTML-only bodies, threads,
attachments, quotes and signatures, auto-replies, and the inbound-parse form shape."""

import json
import uuid
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from services.ingest.app import create_app
from services.ingest.channels.email import (
    NotAnEmail,
    html_to_text,
    parse_inbound_form,
    strip_quotes_and_signature,
)
from services.ingest.settings import IngestSettings
from tests.conftest import read_topic, running


@pytest.fixture
def ingest_app(common):
    return create_app(IngestSettings(**common))


def mail(
    body: str,
    charset: str,
    *,
    subject="Help",
    message_id=None,
    in_reply_to=None,
    references=None,
    sender="Mei <mei@example.com>",
    subtype="plain",
    **headers,
) -> bytes:
    """A message whose body is really encoded in ``charset`` (not re-encoded as UTF-8)."""
    part = MIMEText(body, subtype, charset)
    part["From"] = sender
    part["To"] = "support@exchange.example"
    part["Subject"] = subject
    part["Date"] = "Mon, 24 Nov 2026 09:00:00 +0800"
    part["Message-ID"] = f"<{message_id or uuid.uuid4().hex}@mail.example>"
    if in_reply_to:
        part["In-Reply-To"] = f"<{in_reply_to}@mail.example>"
    if references:
        part["References"] = " ".join(f"<{r}@mail.example>" for r in references)
    for name, value in headers.items():
        part[name.replace("_", "-")] = value
    return part.as_bytes()


async def post_raw(client, ids, raw: bytes):
    return await client.post(
        "/v1/channels/email/inbound",
        content=raw,
        headers={**ids.as_ingest, "content-type": "message/rfc822"},
    )


async def published(broker, topics):
    return [json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.inbound)]


@pytest.mark.parametrize(
    ("charset", "text", "language"),
    [
        ("gbk", "您好，我的提现已经三个小时了还没有到账，请帮忙查一下。", "zh"),
        ("gb2312", "我的账户被盗了，请立即冻结。", "zh"),
        ("big5", "您好，我的帳戶被盜了，請幫忙凍結帳戶。", "zh"),
        ("iso-2022-jp", "出金がまだ反映されていません。確認をお願いします。", "ja"),
        ("shift_jis", "アカウントが乗っ取られました。至急対応してください。", "ja"),
        ("euc-kr", "출금이 아직 처리되지 않았습니다. 확인 부탁드립니다.", "ko"),
    ],
)
async def test_every_charset_is_decoded(ingest_app, ids, broker, topics, charset, text, language):
    raw = mail(text, charset)
    assert text.encode("utf-8") not in raw  # the fixture really is in that charset
    async with running(ingest_app) as client:
        answer = await post_raw(client, ids, raw)
    assert answer.status_code == 200, answer.text
    (event,) = await published(broker, topics)
    assert event["text"] == text
    assert event["customer"] == {
        "id": "email:mei@example.com",
        "name": "Mei",
        "tier": "standard",
        "language": language,
    }
    assert event["subject"] == "Help"
    assert event["sent_at"] == "2026-11-24T09:00:00+08:00"


async def test_a_reply_thread_of_three_lands_in_one_conversation(ingest_app, ids, broker, topics):
    root = uuid.uuid4().hex
    first = mail("My deposit is missing", "utf-8", message_id=root)
    second = mail(
        "Any news?\n\nOn Mon, Support wrote:\n> We are checking",
        "utf-8",
        in_reply_to="agent-reply-1",
        references=[root, "agent-reply-1"],
    )
    third = mail(
        "Still missing.\n\n> Any news?\n-- \nMei\nSent from my phone",
        "utf-8",
        in_reply_to="agent-reply-2",
        references=[root, "agent-reply-1", "agent-reply-2"],
    )
    async with running(ingest_app) as client:
        for raw in (first, second, third):
            assert (await post_raw(client, ids, raw)).status_code == 200
        retry = await post_raw(client, ids, third)
    events = await published(broker, topics)
    assert len({e["conversation_key"] for e in events}) == 1
    assert events[0]["conversation_key"] == f"email:{root}@mail.example"
    assert retry.json()["message_ids"][0] == events[2]["message_id"]
    assert "We are checking" in events[1]["text"]  # the agent sees everything
    assert events[1]["text_for_routing"] == "Help\nAny news?"
    assert events[2]["text_for_routing"] == "Help\nStill missing."


async def test_html_only_mail_becomes_text_and_attachments_are_metadata(
    ingest_app, ids, broker, topics
):
    msg = EmailMessage()
    msg["From"] = "trader@example.com"
    msg["To"] = "support@exchange.example"
    msg["Subject"] = "Liquidation dispute"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    msg.set_content(
        "<html><head><style>p{}</style></head><body><p>I got <b>liquidated</b>"
        " at a wrong price</p><p>Order&nbsp;#123</p><script>x()</script></body>"
        "</html>",
        subtype="html",
    )
    msg.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="statement.pdf"
    )
    async with running(ingest_app) as client:
        answer = await post_raw(client, ids, msg.as_bytes())
    assert answer.status_code == 200
    (event,) = await published(broker, topics)
    assert event["text"] == "I got liquidated at a wrong price\n\nOrder #123"
    assert event["attachments"] == [
        {
            "name": "statement.pdf",
            "content_type": "application/pdf",
            "size": 13,
            "ref": None,
            "kind": None,
        }
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"X_Autoreply": "yes"},
        {"Precedence": "bulk"},
        {"sender": "MAILER-DAEMON@mx.example.com"},
    ],
)
async def test_auto_replies_and_bounces_open_nothing(ingest_app, ids, broker, topics, headers):
    raw = mail("I am out of office until Monday", "utf-8", **headers)
    async with running(ingest_app) as client:
        answer = await post_raw(client, ids, raw)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 0 and answer.json()["ignored"]
    assert await published(broker, topics) == []


async def test_the_inbound_parse_form_shape_is_read(ingest_app, ids, broker, topics):
    form = MIMEMultipart("form-data")
    gbk_text = "提现未到账"
    fields = {
        "headers": f"Message-ID: <{uuid.uuid4().hex}@x>\nFrom: Li <li@example.com>\n"
        "Subject: withdrawal",
        "charsets": json.dumps({"text": "gbk", "subject": "utf-8", "headers": "utf-8"}),
    }
    for name, value in fields.items():
        part = MIMEText(value, "plain", "utf-8")
        part.add_header("Content-Disposition", "form-data", name=name)
        form.attach(part)
    text_part = MIMEText("", "plain")
    text_part.set_payload(gbk_text.encode("gbk"))
    text_part.add_header("Content-Disposition", "form-data", name="text")
    form.attach(text_part)
    body = form.as_bytes().split(b"\n\n", 1)[1]
    content_type = form["Content-Type"].replace("form-data", "form-data", 1)
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/channels/email/inbound",
            content=body,
            headers={**ids.as_ingest, "content-type": content_type},
        )
        garbage = await client.post(
            "/v1/channels/email/inbound",
            content=b"\x00\x01",
            headers={**ids.as_ingest, "content-type": "message/rfc822"},
        )
    assert answer.status_code == 200, answer.text
    assert garbage.status_code == 422
    (event,) = await published(broker, topics)
    assert event["text"] == gbk_text and event["customer"]["id"] == "email:li@example.com"


def test_quotes_signatures_and_html_helpers():
    assert strip_quotes_and_signature("New\n> old\n\n在 2026年 写道：\n旧的") == "New"
    assert strip_quotes_and_signature("Hi\n-- \nBob") == "Hi"
    assert html_to_text("<p>a</p><p>b &amp; c</p>") == "a\n\nb & c"


@pytest.mark.parametrize("charsets", ["15038", '["utf-8"]', '{"text": 7}'])
def test_charsets_that_are_not_an_object_of_names_are_refused(charsets):
    """Found by schemathesis once the form's fields were described: a 500, now a 422."""
    boundary = "b0"
    body = (
        "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in {"from": "a@example.com", "text": "hi", "charsets": charsets}.items()
        )
        + f"--{boundary}--\r\n"
    )
    with pytest.raises(NotAnEmail, match="charsets"):
        parse_inbound_form(f"multipart/form-data; boundary={boundary}", body.encode())
