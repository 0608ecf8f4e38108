"""Level 2's git server in the container stack: the team's remote, over git's smart HTTP
protocol, behind a login. Learners clone it, push to it; its post-receive hook starts CI.

    python -m level2_cicd.git_server        # serves L2_REMOTE at http://<host>:8000/<name>.git

On its first start it creates the remote (level2_cicd/remote.py), seeded with the tracked
files of the checkout mounted at L2_GIT_SERVER_SEED (empty: no seed, the first push fills it),
and installs the hook that calls the Prefect API. Every request is git's own `git
http-backend` (the CGI program git ships for this), run for an authenticated user only: HTTP
basic with L2_GIT_USERNAME / L2_GIT_PASSWORD.
`GET /health` is open, for the health check.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from pathlib import Path

import uvicorn
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from level2_cicd import remote
from level2_cicd.settings import get_settings
from shared.keepalive import SERVER_KEEP_ALIVE_SECONDS

log = logging.getLogger("git_server")


class GitServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="L2_GIT_SERVER_", frozen=True)

    host: str = "0.0.0.0"
    port: int = 8000
    # A checkout whose tracked files seed a new remote; empty: the remote starts empty (a
    # cluster has no checkout to mount: deploy/k8s/level2/git.yaml)
    seed: Path | None = Path("/seed")
    keep_alive_seconds: int = SERVER_KEEP_ALIVE_SECONDS  # idle connections kept open

    @field_validator("seed", mode="before")
    @classmethod
    def empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


Headers = list[tuple[bytes, bytes]]


def authorized(headers: Headers, username: str, password: str) -> bool:
    given = dict(headers).get(b"authorization", b"")
    expected = b"Basic " + base64.b64encode(f"{username}:{password}".encode())
    return bool(username and password) and hmac.compare_digest(given, expected)


def cgi_environ(scope: dict, repo_root: Path, user: str, body_length: int) -> dict[str, str]:
    """The CGI variables `git http-backend` reads (see git-http-backend(1))."""
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    env = {
        "PATH": "/usr/bin:/bin",
        "GIT_PROJECT_ROOT": str(repo_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": scope["method"],
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope.get("query_string", b"").decode(),
        "CONTENT_TYPE": headers.get("content-type", ""),
        "CONTENT_LENGTH": str(body_length),
        "REMOTE_USER": user,  # a push is only accepted from a named user
        "REMOTE_ADDR": (scope.get("client") or ("", 0))[0],
    }
    for header, variable in (("content-encoding", "HTTP_CONTENT_ENCODING"),
                             ("git-protocol", "GIT_PROTOCOL")):  # fmt: skip
        if header in headers:
            env[variable] = headers[header]
    return env


async def respond(send, status: int, body: bytes, headers: Headers = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


class GitHttp:
    """The ASGI app: /health, else `git http-backend` for an authenticated user."""

    def __init__(self, repo: Path, username: str, password: str):
        self.repo, self.username, self.password = repo, username, password

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/health":
            ok = (self.repo / "HEAD").is_file()
            await respond(send, 200 if ok else 503, b"ok" if ok else b"no repository")
            return
        if not authorized(scope["headers"], self.username, self.password):
            challenge = [(b"www-authenticate", b'Basic realm="level 2 git"')]
            await respond(send, 401, b"sign in with L2_GIT_USERNAME/L2_GIT_PASSWORD", challenge)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        env = cgi_environ(scope, self.repo.parent, self.username, len(body))
        backend = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        # Input, output and errors all at once, as a CGI server must: the backend may answer
        # before it reads its input, or without reading it at all (a refused request).
        feeding = asyncio.create_task(feed(backend.stdin, body))
        errors = asyncio.create_task(backend.stderr.read())
        # The CGI answer: header lines, a blank line, then the body, streamed as it comes
        status, headers = 200, []
        while (line := (await backend.stdout.readline()).rstrip(b"\r\n")) != b"":
            name, _, value = line.partition(b":")
            if name.lower() == b"status":
                status = int(value.split()[0])
            else:
                headers.append((name.strip().lower(), value.strip()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        while chunk := await backend.stdout.read(65536):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        await feeding
        stderr = await errors
        if await backend.wait() != 0 or stderr:
            log.warning("git http-backend %s %s: %s", scope["method"], scope["path"],
                        stderr.decode(errors="replace").strip())  # fmt: skip


async def feed(stdin: asyncio.StreamWriter, body: bytes) -> None:
    """The request body to the backend. The backend may exit without reading it all: as in
    asyncio's own `communicate()`, a closed pipe is not an error."""
    try:
        stdin.write(body)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    stdin.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings, server = get_settings(), GitServerSettings()
    repo = Path(settings.remote)
    if not (repo / "HEAD").is_file():
        sha = remote.create(settings, source=server.seed)
        if sha:
            log.info("created %s, seeded from %s at %s", repo, server.seed, sha[:12])
        else:
            log.info("created %s, empty: push to it to start", repo)
    else:
        remote.install_hook(repo)  # the Prefect API it calls may have changed since
    uvicorn.run(
        GitHttp(repo, settings.git_username, settings.git_password.get_secret_value()),
        host=server.host, port=server.port, timeout_keep_alive=server.keep_alive_seconds,
    )  # fmt: skip


if __name__ == "__main__":
    main()
