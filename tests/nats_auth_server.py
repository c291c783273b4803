"""A nats-server (from the wheel) that authenticates with the generated ``auth.conf``.

The configuration is the one ``shared.nats_server`` writes for the tests (loopback,
JetStream, the same ``max_payload``) plus ``include auth.conf``, the block that
``fph-nats-auth`` generates from the principals file. Every user's password is a fresh
random one, given to nats-server in its environment (the committed ``auth.conf``), or
in a passwords file that ``auth.conf`` includes (``--passwords-include``, reloadable).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from shared import nats_auth, nats_server

ROOT = Path(__file__).resolve().parents[1]
PRINCIPALS = ROOT / "deploy" / "nats" / "principals.toml"


def server_config(store_dir: Path, port: int) -> str:
    return "\n".join(
        [
            "host: 127.0.0.1",
            f"port: {port}",
            f"max_payload: {nats_server.MAX_PAYLOAD}",
            "jetstream {",
            f'  store_dir: "{store_dir / "jetstream"}"',
            "}",
            "include auth.conf",
            "",
        ]
    )


@dataclass
class AuthServer:
    """nats-server with the generated users; ``url(user)`` carries that user's password."""

    directory: Path
    port: int
    principals: nats_auth.Principals
    passwords: dict[str, str]
    conf: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def url(self, user: str, password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        return f"nats://{user}:{secret}@127.0.0.1:{self.port}"

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nats-server -t``: test the configuration and exit."""
        return subprocess.run(
            [str(nats_server.binary()), "-t", "-c", str(self.conf)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self) -> AuthServer:
        out = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(nats_server.binary()), "-c", str(self.conf)],
            env=self.env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        nats_server.wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        """Stop, then start again on the same port and store (what adding an account needs)."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: nats-server re-reads its configuration (``nats-server --signal reload``)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def violations(self) -> list[str]:
        """nats-server's log lines about denied publishes and subscriptions."""
        return [line for line in self.log().splitlines() if "Violation" in line]


def prepare(
    directory: Path, principals_path: Path = PRINCIPALS, passwords_file: bool = False
) -> AuthServer:
    """Write ``nats-server.conf`` and the generated ``auth.conf`` under ``directory``, with
    a random password per user in the server's environment, or in ``auth.env`` included
    by ``auth.conf`` (``passwords_file``); the server is not started yet."""
    directory.mkdir(parents=True, exist_ok=True)
    principals = nats_auth.load(principals_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(nats_auth.PASSWORD_ENV_PREFIX)}
    if passwords_file:
        nats_auth.main(
            [
                str(principals_path),
                "-o",
                str(directory / "auth.conf"),
                "--passwords-include",
                "auth.env",
                "--env-file",
                str(directory / "auth.env"),
            ]
        )
        values = nats_auth.read_env(directory / "auth.env")
        passwords = {u.name: values[u.password_env] for u in principals.users}
    else:
        (directory / "auth.conf").write_text(
            nats_auth.render_config(principals, principals_path.name)
        )
        passwords = {u.name: nats_auth.new_password() for u in principals.users}
        env.update({nats_auth.password_env(user): pw for user, pw in passwords.items()})
    port = nats_server.free_port()
    conf = directory / "nats-server.conf"
    conf.write_text(server_config(directory, port))
    return AuthServer(
        directory=directory,
        port=port,
        principals=principals,
        passwords=passwords,
        conf=conf,
        log_path=directory / "nats-server.log",
        env=env,
    )
