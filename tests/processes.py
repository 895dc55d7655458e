"""Services as real processes for e2e and fault tests: start, SIGKILL, restart on the same
port, SIGTERM; each logs to its own file, whose tail is printed when the test ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from devtools.run import launch, stop_all, wait_ready
from devtools.stack import free_port


class Services:
    def __init__(self, common_env: dict[str, str], log_dir: Path) -> None:
        self.common_env = common_env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.extra: dict[str, dict[str, str]] = {}

    @classmethod
    def for_test(
        cls, broker: Any, database_url: str, topics: Any, keys: list[dict[str, Any]], log_dir: Path
    ) -> Services:
        return cls(
            {
                **os.environ,
                "SWITCHBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
                "SWITCHBOARD_DATABASE_URL": database_url,
                "SWITCHBOARD_API_KEYS": json.dumps(keys),
                "SWITCHBOARD_TOPICS__NAMESPACE": topics.namespace,
                "SWITCHBOARD_KAFKA_SESSION_TIMEOUT_MS": "3000",
                "SWITCHBOARD_LOG_LEVEL": "WARNING",
            },
            log_dir,
        )

    def start(self, name: str, kind: str | None = None, **extra: str) -> str:
        """Start service ``kind`` (default: ``name``) as ``name``; its base URL once ready.
        Replicas of one kind share a consumer group."""
        kind = kind or name
        self.kinds[name] = kind
        self.extra[name] = extra
        self.ports.setdefault(name, free_port())
        self._launch(name)
        return self.url(name)

    def _launch(self, name: str) -> None:
        namespace = self.common_env["SWITCHBOARD_TOPICS__NAMESPACE"]
        env = {
            **self.common_env,
            "SWITCHBOARD_CONSUMER_GROUP": f"{self.kinds[name]}-{namespace}",
            "SWITCHBOARD_PORT": str(self.ports[name]),
            **self.extra[name],
        }
        self.processes[name] = launch(self.kinds[name], env, self.log_dir / f"{name}.log")
        wait_ready(name, self.ports[name], self.processes[name], timeout=60)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown code runs, as when a pod is killed or a machine dies."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def terminate(self, name: str) -> int:
        """SIGTERM and wait: the graceful shutdown; the exit code."""
        process = self.processes.pop(name)
        process.terminate()
        return process.wait(30)

    def restart(self, name: str) -> None:
        self._launch(name)

    def stop(self) -> None:
        stop_all(self.processes)
        for name in self.kinds:
            log = self.log_dir / f"{name}.log"
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()
                errors = [line for line in lines if '"level": "error"' in line][:3]
                print(f"--- {name} log: first errors\n" + "\n".join(errors))
                print(f"--- {name} log (tail)\n" + "\n".join(lines[-10:]))
