"""Single sign-on: agent frontends show OIDC JWTs from the company's identity provider, here a
JWKS served on loopback by the test. Signature, expiry, issuer and audience are checked, keys
rotate through the JWKS, a claim names the agent and a role grants ops."""

import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from services.router.app import create_app as router_app
from services.router.settings import RouterSettings
from shared.sso import principal_of
from tests.conftest import running, serving
from tests.integration.routerkit import put_agent

ISSUER = "https://login.example.com/realms/desk"
AUDIENCE = "switchboard"


class IdentityProvider:
    """Signing keys and the JWKS that publishes them, as a provider rotates them."""

    def __init__(self) -> None:
        self.keys: dict[str, object] = {}
        self.published: list[str] = []
        self.fetches = 0
        self.app = FastAPI()

        @self.app.get("/jwks")
        async def jwks() -> dict:
            self.fetches += 1
            public = [self.keys[kid].public_key() for kid in self.published]
            return {
                "keys": [
                    {**jwt.algorithms.RSAAlgorithm.to_jwk(k, as_dict=True), "kid": kid}
                    if isinstance(k, rsa.RSAPublicKey)
                    else {**jwt.algorithms.ECAlgorithm.to_jwk(k, as_dict=True), "kid": kid}
                    for kid, k in zip(self.published, public, strict=True)
                ]
            }

    def new_key(self, kind: str = "rsa", *, publish: bool = True) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        if publish:
            self.published.append(kid)
        return kid

    def token(self, kid: str, *, alg: str = "RS256", ttl: float = 300, **claims) -> str:
        now = time.time()
        payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl, **claims}
        return jwt.encode(payload, self.keys[kid], algorithm=alg, headers={"kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_agents_and_ops_sign_in_with_the_identity_providers_tokens(common, ids):
    idp = IdentityProvider()
    first = idp.new_key()
    async with serving(idp.app) as idp_url:
        settings = RouterSettings(
            **common,
            oidc_issuer=ISSUER,
            oidc_audience=AUDIENCE,
            oidc_jwks_url=f"{idp_url}/jwks",
            oidc_agent_claim="preferred_username",
            oidc_role_claim="realm_access.roles",
            oidc_ops_role="desk-ops",
            oidc_jwks_min_refresh_s=0,
        )
        async with running(router_app(settings)) as router:
            agent = ids.agent_ids[0]
            await put_agent(router, ids, agent, online=False)
            as_agent = idp.token(first, sub="u-1", preferred_username=agent)
            online = await router.put(
                f"/v1/agents/{agent}/status",
                headers=bearer(as_agent),
                json={"status": "online"},
            )
            assert online.status_code == 200, online.text
            assert online.json()["status"] == "online"
            # The agent's token is that agent's, and no more.
            other = ids.agent_ids[1]
            assert (await router.get("/v1/agents", headers=bearer(as_agent))).status_code == 403
            refused = await router.put(
                f"/v1/agents/{other}/status", headers=bearer(as_agent), json={"status": "away"}
            )
            assert refused.status_code == 403

            as_ops = idp.token(first, sub="u-2", realm_access={"roles": ["desk-ops"]})
            assert (await router.get("/v1/agents", headers=bearer(as_ops))).status_code == 200

            async def refused_with(token: str) -> str:
                answer = await router.get("/v1/agents", headers=bearer(token))
                assert answer.status_code == 401, answer.text
                assert answer.headers["www-authenticate"] == "Bearer"
                return answer.json()["detail"].lower()

            roles = {"realm_access": {"roles": ["desk-ops"]}}
            assert "expired" in await refused_with(idp.token(first, ttl=-120, **roles))
            assert "audience" in await refused_with(
                jwt.encode(
                    {"iss": ISSUER, "aud": "another-app", "exp": time.time() + 60, **roles},
                    idp.keys[first],
                    algorithm="RS256",
                    headers={"kid": first},
                )
            )
            assert "issuer" in await refused_with(
                jwt.encode(
                    {"iss": "https://evil.example", "aud": AUDIENCE, "exp": time.time() + 60},
                    idp.keys[first],
                    algorithm="RS256",
                    headers={"kid": first},
                )
            )
            # A forged signature: another key claiming the published key's id.
            forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            forged = jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 60, **roles},
                forger,
                algorithm="RS256",
                headers={"kid": first},
            )
            assert "signature" in (await refused_with(forged)).lower()
            # Symmetric or unsigned tokens are never accepted.
            hs = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, **roles}, "s" * 32, "HS256")
            assert "algorithm" in await refused_with(hs)
            header = jwt.utils.base64url_encode(b'{"alg":"none"}').decode()
            body = jwt.utils.base64url_encode(b'{"iss":"x"}').decode()
            assert "algorithm" in await refused_with(f"{header}.{body}.")
            # A key the JWKS never published.
            unknown = idp.new_key(publish=False)
            assert "lacks" in await refused_with(idp.token(unknown, **roles))

            # The provider rotates: a token of its new key is taken at once (the JWKS is
            # read again for a key it did not hold), an EC key as well as an RSA one.
            rotated = idp.new_key("ec")
            idp.published = [rotated]
            fetched = idp.fetches
            as_ops_now = idp.token(rotated, alg="ES256", sub="u-2", **roles)
            answer = await router.get("/v1/agents", headers=bearer(as_ops_now))
            assert answer.status_code == 200, answer.text
            assert idp.fetches == fetched + 1
            # A token once checked is remembered until it expires: no fetch, no check.
            for _ in range(3):
                answer = await router.get("/v1/agents", headers=bearer(as_ops_now))
                assert answer.status_code == 200
            assert idp.fetches == fetched + 1
            # API keys keep working beside single sign-on.
            assert (await router.get("/v1/agents", headers=ids.as_ops)).status_code == 200


def test_claims_name_the_agent_and_roles_grant_ops():
    settings = RouterSettings(
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url="http://127.0.0.1/jwks",
        oidc_agent_claim="agent.id",
        oidc_role_claim="scp",
    )
    both = principal_of({"sub": "u", "agent": {"id": "alice"}, "scp": "read desk-x"}, settings)
    assert both.scopes == {"agent:alice"} and both.name == "sso:alice"
    ops = principal_of({"sub": "u", "scp": "switchboard-ops other"}, settings)
    assert ops.scopes == {"ops"} and ops.name == "sso:u"
    assert principal_of({"sub": "u", "agent": {"id": ""}, "scp": 7}, settings).scopes == set()
