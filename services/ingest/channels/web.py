"""The two channels we host ourselves: the live-chat widget and the web form (ticket)."""

from __future__ import annotations

import base64

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.ingest.channels.base import Incoming
from shared.events import Channel, Customer, CustomerTier, message_id_for


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChatMessageIn(_Strict):
    """One message typed into the chat widget (relayed by the integrator's backend)."""

    visitor_id: str = Field(min_length=1, max_length=200)
    session_id: str = Field(min_length=1, max_length=200)
    message_id: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=20_000)
    name: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, pattern=r"^[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    tier: CustomerTier = CustomerTier.STANDARD


class FormIn(_Strict):
    """A ticket submitted on the web form."""

    submission_id: str = Field(min_length=1, max_length=200, description="the form's own id")
    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)
    email: EmailStr
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=100)
    exchange_uid: str | None = Field(default=None, max_length=100)
    language: str | None = Field(default=None, pattern=r"^[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*$")


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
