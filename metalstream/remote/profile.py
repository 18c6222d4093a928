"""Where the remote CLI finds the service: --url/--token, else METALSTREAM_URL/METALSTREAM_TOKEN, else the
profile `metalstream login` wrote ($XDG_CONFIG_HOME or ~/.config, then metalstream/profile.json, mode 0600)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from metalstream.errors import BadInput

URL_ENV = "METALSTREAM_URL"
TOKEN_ENV = "METALSTREAM_TOKEN"


def profile_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "metalstream" / "profile.json"


@dataclass(frozen=True)
class Target:
    """The service a command talks to; `url_from`/`token_from` say where each came from (for errors)."""
    url: str
    token: str | None
    url_from: str
    token_from: str | None


def check_url(url: str, location: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
        raise BadInput(f"{url!r} is not the service's base URL; give http(s)://HOST:PORT", location=location)
    return url.rstrip("/")


def load_profile(path: Path | None = None) -> dict:
    path = path or profile_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the profile: {exc}; run `metalstream login URL` again", location=str(path)) from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k, ""), str) for k in ("url", "token")):
        raise BadInput("is not a metalstream profile; run `metalstream login URL` again", location=str(path))
    return data


def save_profile(url: str, token: str, path: Path | None = None) -> Path:
    """Write the profile atomically, readable by its owner only (it holds a bearer token)."""
    path = path or profile_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f)
        f.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by umask; the token must never be group-readable
    os.replace(tmp, path)
    return path


def resolve(url: str | None, token: str | None) -> Target:
    """The URL and token by precedence: options, then environment, then the profile."""
    profile = load_profile() if url is None or token is None else {}
    where = str(profile_path())
    if url is not None:
        url_from, chosen_url = "--url", url
    elif os.environ.get(URL_ENV):
        url_from, chosen_url = URL_ENV, os.environ[URL_ENV]
    elif profile.get("url"):
        url_from, chosen_url = where, profile["url"]
    else:
        raise BadInput(f"no service URL: give --url URL, set {URL_ENV}, or run `metalstream login URL` "
                       f"(it writes {where})", location="--url")
    if token is not None:
        token_from, chosen_token = "--token", token
    elif os.environ.get(TOKEN_ENV):
        token_from, chosen_token = TOKEN_ENV, os.environ[TOKEN_ENV]
    elif profile.get("token") and check_url(profile.get("url", ""), where) == check_url(chosen_url, url_from):
        # the profile's token goes only to the profile's service, never to another --url
        token_from, chosen_token = where, profile["token"]
    else:
        token_from, chosen_token = None, None
    return Target(check_url(chosen_url, url_from), chosen_token, url_from, token_from)
