from pathlib import Path

import pytest

from services.router.routing.classify import classify, raise_on_followup
from services.router.routing.rules import (
    DEFAULT_RULES_PATH,
    RulesError,
    RulesSource,
    load_rules,
    parse_rules,
)
from shared.events import Channel, CustomerTier, Priority, Skill

RULES = load_rules(DEFAULT_RULES_PATH)


def decide(text: str, tier: CustomerTier = CustomerTier.STANDARD, hint: str | None = None):
    return classify(text, rules=RULES, tier=tier, language_hint=hint)


@pytest.mark.parametrize(
    ("text", "priority", "skill", "language"),
    [
        ("My account was hacked and someone withdrew everything", "urgent", "security", "en"),
        ("I see an unauthorized withdrawal I did not make", "urgent", "security", "en"),
        ("now they took my funds", "urgent", "security", "en"),
        ("Someone has drained my wallet", "urgent", "security", "en"),
        ("my account was emptied overnight", "urgent", "security", "en"),
        ("it took my funds two days to arrive", "normal", "general", "en"),
        ("they took my order wrong", "normal", "general", "en"),
        ("我的账户被盗了", "urgent", "security", "zh"),
        ("アカウントが乗っ取られました", "urgent", "security", "ja"),
        ("계정이 해킹당했어요", "urgent", "security", "ko"),
        ("My withdrawal is pending for 3 hours", "high", "funds", "en"),
        ("充值三个小时还未到账", "high", "funds", "zh"),
        ("入金が反映されない", "high", "funds", "ja"),
        ("출금이 지연되고 있어요", "high", "funds", "ko"),
        ("I got liquidated at a wrong price", "high", "trading", "en"),
        ("合约爆仓了", "high", "trading", "zh"),
        ("How do I create an API key?", "normal", "api", "en"),
        ("KYC verification failed", "normal", "account", "en"),
        ("Just a suggestion: add dark mode", "low", "general", "en"),
        ("hello", "normal", "general", "en"),
    ],
)
def test_messages_get_priority_skill_and_language_from_the_rules(text, priority, skill, language):
    decision = decide(text)
    assert (decision.priority, decision.skill, decision.language) == (priority, skill, language)


def test_every_decision_records_the_rules_that_fired():
    decision = decide("hacked! and my withdrawal is pending")
    assert decision.rules_fired == (
        "security.account-compromise",
        "funds.not-credited",
        "language.latin-default",
    )
    assert decision.priority == Priority.URGENT and decision.skill == Skill.SECURITY


def test_vip_customers_rank_one_level_higher():
    assert decide("hello", CustomerTier.VIP).priority == Priority.HIGH
    assert "tier.vip" in decide("hello", CustomerTier.VIP).rules_fired
    assert decide("my account was hacked", CustomerTier.VIP).priority == Priority.URGENT


def test_a_vip_decision_records_tier_vip_even_when_already_urgent():
    urgent = decide("my account was hacked", CustomerTier.VIP)
    assert urgent.rules_fired == (
        "security.account-compromise",
        "tier.vip",
        "language.latin-default",
    )
    assert "tier.vip" not in decide("my account was hacked").rules_fired


def test_the_language_rule_never_claims_a_hint_the_router_cannot_know_of():
    """The router cannot tell a hint from ingest's detection: the message's language is
    recorded as ingest's, and without one, as the router's own default."""
    assert decide("hola, necesito ayuda", hint="es").rules_fired[-1] == "language.ingest"
    assert decide("hello").rules_fired[-1] == "language.latin-default"
    assert decide("你好", hint="en").rules_fired[-1] == "language.script-zh"
    assert not any("hint" in r for r in decide("hello").rules_fired)


def test_the_customer_language_hint_decides_latin_text_but_not_an_unambiguous_script():
    assert decide("hola, necesito ayuda", hint="es").language == "es"
    assert decide("你好", hint="en").language == "zh"


def test_a_followup_with_urgent_words_raises_a_waiting_conversation():
    waiting = decide("hello")
    assert raise_on_followup(waiting, decide("still waiting?")) == waiting
    raised = raise_on_followup(waiting, decide("now my account got hacked"))
    assert raised.priority == Priority.URGENT
    assert "security.account-compromise" in raised.rules_fired
    assert raise_on_followup(decide("hacked"), decide("thanks")).priority == Priority.URGENT


def test_the_documented_followup_raises_a_waiting_conversation_with_its_rules_level_and_team():
    waiting = decide("still waiting?")
    raised = raise_on_followup(waiting, decide("now they took my funds"))
    assert (raised.priority, raised.skill) == (Priority.URGENT, Skill.SECURITY)
    assert raised.rules_fired[-1] == "security.account-compromise"
    rules = parse_rules(
        "rules: [{id: senior, priority: urgent, skill: security, patterns: [took], "
        "min_level: 4, team: L2}]"
    )
    plain = classify("hello", rules=rules)
    senior = raise_on_followup(plain, classify("they took it", rules=rules))
    assert (senior.priority, senior.min_level, senior.team) == (Priority.URGENT, 4, "L2")


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("rules: [{id: a, priority: asap, skill: funds, patterns: [x]}]", "priority"),
        ("rules: [{id: a, priority: high, skill: funds, patterns: ['(']}]", "regular expression"),
        (
            "rules: [{id: a, priority: high, skill: funds, patterns: [x]}, "
            "{id: a, priority: low, skill: general, patterns: [y]}]",
            "appears twice",
        ),
        ("rules: [oops", "YAML"),
    ],
)
def test_a_bad_rules_file_is_refused_with_the_reason(document, complaint):
    with pytest.raises(RulesError, match=complaint):
        parse_rules(document)


def test_a_refusal_names_each_rule_by_its_id_and_says_what_is_wrong_in_plain_words():
    with pytest.raises(RulesError) as refused:
        parse_rules(
            """
rules:
  - {id: fine, priority: low, skill: general, patterns: [x]}
  - {id: crash.words, priority: apocalyptic, patterns: [crash], colour: red}
  - {priority: low, skill: general, patterns: [y]}
escalation: {at: 2}
""",
            source="rules.yaml",
        )
    assert str(refused.value).splitlines() == [
        "rules.yaml: 5 problem(s)",
        "  escalation.at: Input should be less than or equal to 1 (found 2)",
        "  rule 'crash.words': priority: Input should be 'urgent', 'high', 'normal' or 'low' "
        "(found 'apocalyptic')",
        "  rule 'crash.words': skill: Field required",
        "  rule 'crash.words': colour: Extra inputs are not permitted (found 'red')",
        "  rule #3: id: Field required",
    ]
    assert "pydantic" not in str(refused.value) and "rules.1" not in str(refused.value)


def test_rules_reload_when_the_file_changes_and_a_bad_file_keeps_the_old_rules(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules: [{id: first, priority: low, skill: general, patterns: [zebra]}]")
    source = RulesSource(path)
    assert [r.id for r in source.current().rules] == ["first"]

    path.write_text("rules: [{id: second, priority: urgent, skill: security, patterns: [zebra]}]")
    _bump_mtime(path)
    assert [r.id for r in source.current().rules] == ["second"]

    path.write_text("rules: [{id: broken, priority: nope}]")
    _bump_mtime(path)
    assert [r.id for r in source.current().rules] == ["second"]


def _bump_mtime(path: Path) -> None:
    import os

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_rules_can_match_on_channel_form_category_and_tier():
    rules = parse_rules("""
rules:
  - {id: form.security, priority: urgent, skill: security, categories: [account_security]}
  - {id: x.public, priority: high, skill: general, channels: [x], patterns: [scam]}
  - {id: vip.api, priority: high, skill: api, tiers: [vip], patterns: ['\\bapi\\b'],
     min_level: 3, team: L2}
""")
    form = classify("please help", rules=rules, channel=Channel.FORM, category="account_security")
    assert (form.priority, form.skill, form.rules_fired[0]) == (
        "urgent",
        "security",
        "form.security",
    )
    assert classify("please help", rules=rules, channel=Channel.FORM).rules_fired[0] == "default"
    assert classify("a scam!", rules=rules, channel=Channel.X).priority == "high"
    assert classify("a scam!", rules=rules, channel=Channel.CHAT).priority == "normal"
    vip = classify("api down", rules=rules, tier=CustomerTier.VIP)
    assert (vip.skill, vip.min_level, vip.team) == ("api", 3, "L2")
    assert classify("api down", rules=rules).skill == "general"


def test_a_rule_without_any_condition_is_refused():
    with pytest.raises(RulesError, match="no condition"):
        parse_rules("rules: [{id: empty, priority: low, skill: general}]")
