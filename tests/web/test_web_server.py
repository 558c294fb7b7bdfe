"""The page's routes without a browser: the files, their types and headers, and that no
path reaches outside the static folder; and the sources' notes the page shows."""

from __future__ import annotations

import asyncio
import re

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Message

from chatgate.server import web
from chatgate.source_notes import NOTES, note_for
from chatgate.sources import SOURCES


@pytest.fixture(scope="module")
def client() -> TestClient:
    """The page's routes alone, as app.py mounts them."""
    return TestClient(Starlette(routes=web.ROUTES))


def test_the_index_is_served_with_a_strict_policy(client: TestClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/static/app.js">' in answer.text
    policy = answer.headers["content-security-policy"]
    directives = dict(item.strip().split(" ", 1) for item in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no other origin
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'none'"
    assert "unsafe" not in policy and "http" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-cache"


def test_the_page_has_no_inline_script_style_or_remote_resource() -> None:
    for path in web.STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "").replace(
            "http://127.0.0.1", ""
        ), path.name
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), "an inline script"
            assert " style=" not in text and "<style" not in text, "an inline style"
            assert not re.search(r"\son[a-z]+=", text), "an inline event handler"
        if path.suffix == ".js":
            assert "innerHTML" not in text and "insertAdjacentHTML" not in text, path.name
            assert "console." not in text, f"{path.name} logs (a key could end up there)"
            assert "eval(" not in text and "new Function" not in text, path.name


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
        ("index.html", "text/html; charset=utf-8"),
    ],
)
def test_each_kind_of_file_has_its_type(client: TestClient, name: str, kind: str) -> None:
    answer = client.get(f"/static/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == kind
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.content == (web.STATIC / name).read_bytes()


def test_every_module_the_page_imports_is_served(client: TestClient) -> None:
    for path in web.STATIC.glob("*.js"):
        for imported in re.findall(r"from '\./([a-z_]+\.js)'", path.read_text()):
            assert client.get(f"/static/{imported}").status_code == 200, (path.name, imported)


def test_a_file_seen_before_answers_304(client: TestClient) -> None:
    first = client.get("/static/app.js")
    etag = first.headers["etag"]
    again = client.get("/static/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert client.get("/static/app.js", headers={"If-None-Match": '"other"'}).status_code == 200


def test_head_gives_the_length_without_the_body(client: TestClient) -> None:
    answer = client.head("/static/style.css")
    assert answer.status_code == 200 and answer.content == b""
    assert int(answer.headers["content-length"]) == (web.STATIC / "style.css").stat().st_size


@pytest.mark.parametrize(
    "name", ["missing.js", "app.py", ".hidden.js", "app.js.map", "web.py", "sub/app.js"]
)
def test_anything_else_is_a_404(client: TestClient, name: str) -> None:
    assert client.get(f"/static/{name}").status_code == 404


def _raw_get(path: str, raw_path: bytes) -> tuple[int, bytes]:
    """GET on the page's routes with the path exactly as given (no client normalises it)."""
    app = Starlette(routes=web.ROUTES)
    sent: list[Message] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1234),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/static/../web.py", b"/static/../web.py"),
        ("/static/../x", b"/static/../x"),
        ("/static/../x", b"/static/%2e%2e/x"),
        ("/static/../web.py", b"/static/..%2fweb.py"),
        ("/static/..\\web.py", b"/static/..%5cweb.py"),
        ("/static//etc/passwd", b"/static//etc/passwd"),
        ("/static/", b"/static/"),
    ],
)
def test_no_path_leaves_the_static_folder(path: str, raw: bytes) -> None:
    status, body = _raw_get(path, raw)
    assert status == 404
    assert b"import" not in body and b"root:" not in body


def test_every_source_has_a_note_in_our_words() -> None:
    assert set(NOTES) == set(SOURCES)
    for source_id, note in NOTES.items():
        assert note.hint.strip(), source_id
        assert note.key_url is None or note.key_url.startswith("https://"), source_id
    assert note_for("custom") is not None and "/v1" in note_for("custom").hint  # type: ignore[union-attr]
    assert "/chat/completions" in NOTES["custom"].hint
    assert note_for("nothing") is None
    for source_id, source in SOURCES.items():
        if source.key_required:
            assert NOTES[source_id].key_url, f"{source_id} needs a key: say where to get one"
