"""The two channels we host ourselves: the live-chat widget and the web form (ticket)."""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.ingest.channels.base import Incoming
from shared.events import Channel, Customer, CustomerTier
from shared.ids import message_id_for


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _language_hint() -> Any:
    return Field(
        default=None,
        pattern=r"^[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*$",
        description="BCP 47 tag (en, zh-Hant), a hint: the language detected from the text "
        "wins when the detector is sure of it; the hint decides when the text is short or "
        "ambiguous (docs/routing.md, language.ingest)",
        examples=["en", "zh-Hant"],
    )


class ChatMessageIn(_Strict):
    """One message typed into the chat widget (relayed by the integrator's backend)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "visitor_id": "v-81f2",
                    "session_id": "s-2024-06-01-0007",
                    "message_id": "1",
                    "text": "my withdrawal is stuck",
                    "name": "Mei",
                    "language": "en",
                    "tier": "vip",
                }
            ]
        }
    )

    visitor_id: str = Field(
        min_length=1, max_length=200, description="the visitor; the customer id is visitor:<it>"
    )
    session_id: str = Field(
        min_length=1,
        max_length=200,
        description="the chat session: one conversation (conversation key chat:<session_id>)",
    )
    message_id: str = Field(
        min_length=1,
        max_length=200,
        description="the message's id within the session; a retry with the same one is stored once",
    )
    text: str = Field(min_length=1, max_length=20_000, description="what the visitor typed")
    name: str | None = Field(default=None, max_length=200, description="shown to the agent")
    language: str | None = _language_hint()
    tier: CustomerTier = Field(
        default=CustomerTier.STANDARD,
        description="the customer's tier as your backend knows it; a tier listed in the rules' "
        "vip_tiers (vip) ranks the conversation one priority higher (rule tier.vip)",
    )


class FormIn(_Strict):
    """A ticket submitted on the web form."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "submission_id": "f-000123",
                    "subject": "Deposit not credited",
                    "body": "I sent 0.5 BTC three hours ago, txid 4a5e1e...",
                    "email": "mei@example.com",
                    "name": "Mei",
                    "category": "deposits",
                    "exchange_uid": "U1234567",
                    "language": "en",
                }
            ]
        }
    )

    submission_id: str = Field(
        min_length=1,
        max_length=200,
        description="the form's own id; the ticket number derives from it, so a resubmission "
        "gets the same ticket and is stored once",
    )
    subject: str = Field(min_length=1, max_length=300, description="routed on with the body")
    body: str = Field(min_length=1, max_length=20_000)
    email: EmailStr = Field(description="the customer's address (customer id email:<it>)")
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(
        default=None,
        max_length=100,
        description="the category the customer chose; rules may match it (categories)",
    )
    exchange_uid: str | None = Field(
        default=None,
        max_length=100,
        description="the customer's account id; when given, the customer id is uid:<it>",
    )
    language: str | None = _language_hint()


def read_chat(message: ChatMessageIn) -> Incoming:
    return Incoming(
        channel=Channel.CHAT,
        channel_message_id=f"{message.session_id}:{message.message_id}",
        conversation_ref=message.session_id,
        customer=Customer(
            id=f"visitor:{message.visitor_id}",
            name=message.name,
            tier=message.tier,
            language=message.language,
        ),
        text=message.text,
    )


def ticket_number(submission_id: str) -> str:
    """A short, human-readable, stable ticket number (a resubmission gets the same one)."""
    digest = message_id_for(Channel.FORM, submission_id).bytes[:5]
    code = base64.b32encode(digest).decode().rstrip("=")
    return f"SB-{code[:4]}-{code[4:]}"


def read_form(form: FormIn) -> Incoming:
    ticket = ticket_number(form.submission_id)
    customer_id = f"uid:{form.exchange_uid}" if form.exchange_uid else f"email:{form.email}"
    return Incoming(
        channel=Channel.FORM,
        channel_message_id=form.submission_id,
        conversation_ref=ticket,
        customer=Customer(id=customer_id, name=form.name, language=form.language),
        text=f"{form.subject}\n\n{form.body}",
        subject=form.subject,
        category=form.category,
        ticket=ticket,
    )
