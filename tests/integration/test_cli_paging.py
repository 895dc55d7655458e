"""The CLI lists every agent and queue, however many pages the router answers in."""

import httpx

from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import serving
from tests.integration.routerkit import put_agent
from tests.integration.test_cli import switchboard


async def test_agents_list_follows_the_pages_to_the_last_agent(common, ids):
    app = create_app(RouterSettings(**common, list_page_size=2))
    agents = [f"page-{i}" for i in range(5)]
    async with serving(app) as router:
        async with httpx.AsyncClient(base_url=router) as client:
            for agent in agents:
                await put_agent(client, ids, agent, online=False)
        env = {"SWITCHBOARD_ROUTER_URL": router, "SWITCHBOARD_OPS_KEY": ids.ops}
        code, stdout, stderr = await switchboard("agents", "list", env=env)
    assert code == 0, stderr
    assert all(agent in stdout for agent in agents)
