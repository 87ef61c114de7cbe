"""A loopback fake of the Hugging Face Hub, for testing `push_to_hub` / `from_pretrained(repo_id)` without internet.

`FakeHub` is a real HTTP server on 127.0.0.1 (stdlib `ThreadingHTTPServer` in a daemon thread) that speaks the
endpoints `huggingface_hub` 2.4 and transformers 5 call to create a repository, push to it and download from it.
Mocking `HfApi` methods would skip the parts that break in practice (request payloads, headers the download code
needs, error codes mapped to exceptions, README metadata validation); a server exercises all of them.

Endpoints (read from `huggingface_hub/hf_api.py`, `_commit_api.py`, `file_download.py`, `utils/_http.py`):

    POST   /api/repos/create                          create_repo (409 + url when it exists)
    DELETE /api/repos/delete                          delete_repo
    POST   /api/validate-yaml                         README front matter check done before every commit with one
    GET    /api/whoami-v2                             whoami
    GET    /api/{type}s/{repo}[/revision/{rev}]       model_info / dataset_info / repo_info (siblings, sha, cardData)
    GET    /api/{type}s/{repo}/tree/{rev}[/{path}]    list_repo_tree / list_repo_files
    POST   /api/{type}s/{repo}/paths-info/{rev}       get_paths_info
    GET    /api/{type}s/{repo}/commits/{rev}          list_repo_commits
    POST   /api/{type}s/{repo}/preupload/{rev}        `uploadMode: "lfs"` for files of `lfs_threshold` bytes or
                                                      more, `"regular"` (contents inline, base64) for the rest
    POST   /[{type}s/]{repo}.git/info/lfs/objects/batch  git-lfs batch API: an upload + verify action per object not
                                                      stored yet, none for one already stored
    PUT    /lfs-objects/{sha256}                      the upload href: the object's bytes (sha256 checked)
    POST   /lfs-objects/{sha256}/verify               the verify href: 200 once the object is stored with that size
    POST   /api/{type}s/{repo}/commit/{rev}           NDJSON: header, file (base64), lfsFile (a stored object),
                                                      deletedFile, deletedFolder
    HEAD   /[{type}s/]{repo}/resolve/{rev}/{path}     hf_hub_download metadata: X-Repo-Commit, ETag, Content-Length
    GET    /[{type}s/]{repo}/resolve/{rev}/{path}     the file (Range requests answered with 206)

Errors carry the `X-Error-Code` header the client maps to exceptions: `RepoNotFound` -> `RepositoryNotFoundError`,
`RevisionNotFound` -> `RevisionNotFoundError`, `EntryNotFound` -> `EntryNotFoundError`. Requests to any other route
get a 404 and are recorded in `FakeHub.unhandled`, so a test can tell a missing endpoint from a missing file.

Large files take the Hub's LFS path: preupload says "lfs", the client computes the sha256, asks the batch endpoint
for upload instructions, PUTs the bytes to the returned href, verifies, then commits an `lfsFile` pointer. The Hub
offers Xet storage first when `hf_xet` is installed; the fake Hub does not speak Xet, so `activate()` / `env()` set
`HF_HUB_DISABLE_XET`, which makes the client use the LFS protocol (what it does on the Hub without `hf_xet`).
Downloads of an LFS file answer with its sha256 as `X-Linked-Etag` / ETag, as the Hub does; `FakeHub.upload_modes`
records how every committed file arrived ("regular" or "lfs").

Repositories live in memory with their full history: every commit stores a snapshot of the tree and a 40-hex sha,
`main` points at the newest one, and files can be downloaded at any past commit. Repo ids must have a namespace
(`org/name`; `create_repo("name")` puts it under the fake user). Only `main` is a branch; pull requests are not
supported.

`FakeHub.activate()` points huggingface_hub and transformers at the server for the duration of a `with` block: it sets
`HF_ENDPOINT`, turns offline mode off (the rest of the test suite stays offline), uses a throw-away `HF_HOME` cache
and a fake token, and patches the module-level values huggingface_hub and transformers computed from the environment
at import time. `FakeHub.env()` gives the same settings as environment variables for a child process.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = ("model", "dataset", "space")
# What huggingface.co writes as the first commit of a new repository.
INITIAL_GITATTRIBUTES = b"""*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.tar.gz filter=lfs diff=lfs merge=lfs -text
"""
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def git_blob_sha(content: bytes) -> str:
    """The git object id of a blob, which the Hub uses as ETag and `oid` of regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class FakeCommit:
    """One commit: its sha, message and the full tree after it (path -> content)."""

    oid: str
    title: str
    message: str
    author: str
    date: datetime
    files: dict[str, bytes]
    lfs: dict[str, str] = field(default_factory=dict)  # path -> sha256, for the files stored as LFS objects


@dataclass
class FakeRepo:
    repo_id: str
    repo_type: str
    private: bool
    created_at: datetime
    commits: list[FakeCommit] = field(default_factory=list)  # oldest first; the last one is `main`

    @property
    def head(self) -> FakeCommit:
        return self.commits[-1]

    def commit_at(self, revision: str) -> FakeCommit | None:
        """The commit a revision names: `main`, or a full commit sha of this repo's history."""
        if revision == "main":
            return self.head
        if _COMMIT_SHA.match(revision):
            return next((c for c in self.commits if c.oid == revision), None)
        return None


class HubError(Exception):
    """An error answer: HTTP status, `X-Error-Code` (what huggingface_hub maps to an exception) and message."""

    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


def _front_matter(readme: bytes) -> dict | None:
    """Parse the YAML front matter of a README; None when it has none. Raises `yaml.YAMLError` / ValueError."""
    text = readme.decode("utf-8")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.DOTALL)
    if match is None:
        return None
    data = yaml.safe_load(match.group(1))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"the front matter must be a mapping, got {type(data).__name__}")
    return data


def _iso(date: datetime) -> str:
    return date.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeHub:
    """An in-memory Hub served over HTTP on 127.0.0.1. Use as a context manager (starts and stops the server).

    Args:
        token: the only access token the server accepts (`Authorization: Bearer <token>`). Writes need it; reads of
            public repositories work without one, as on the Hub.
        user: the account that token belongs to (namespace of repos created without one, `whoami()["name"]`).
        lfs_threshold: files of this many bytes or more are uploaded through LFS (the Hub's limit for regular files
            is 10 MB; tests set a small one to exercise the LFS path with tiny weights).

    Example:
        >>> with FakeHub() as hub, hub.activate():
        ...     model.push_to_hub("org/tiny")
        ...     reloaded = AutoModel.from_pretrained("org/tiny")
        ...     sorted(hub.files("org/tiny"))
    """

    def __init__(
        self, token: str = "hf_fakehubtoken0123456789", user: str = "fake-user", lfs_threshold: int = 10 * 1024**2
    ):
        if not token or not user:
            raise ValueError(f"FakeHub needs a non-empty token and user, got token={token!r}, user={user!r}.")
        if lfs_threshold < 1:
            raise ValueError(f"FakeHub's lfs_threshold must be a positive number of bytes, got {lfs_threshold}.")
        self.lfs_threshold = lfs_threshold
        self.upload_modes: list[tuple[str, str, str]] = []  # (repo_id, path, "regular" | "lfs") of committed files
        self._lfs_objects: dict[str, bytes] = {}  # sha256 -> content, shared by all repos (content-addressed)
        self._lfs_expected: dict[str, int] = {}  # sha256 -> size announced to the batch endpoint, not yet uploaded
        self.token = token
        self.user = user
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.unhandled: list[tuple[str, str]] = []  # requests no route answered
        self._repos: dict[tuple[str, str], FakeRepo] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._commit_counter = 0

    # --- server lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        if self._server is not None:
            return self
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        # Port 0: the OS picks a free port, so parallel test processes never collide.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps `stop()` (which waits for the loop to notice) from costing 0.5 s per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeHub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """`http://127.0.0.1:<port>`, what `HF_ENDPOINT` must be set to."""
        if self._server is None:
            raise RuntimeError("The FakeHub is not running: use it as a context manager or call start().")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- inspection helpers for tests -----------------------------------------------------------------------------
    def repo_ids(self, repo_type: str = "model") -> list[str]:
        """Ids of the repositories of one type that exist on the fake Hub."""
        with self._lock:
            return sorted(repo_id for kind, repo_id in self._repos if kind == repo_type)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """`{path: content}` of a repository at a revision (`main` or a commit sha)."""
        return dict(self._commit(repo_id, revision, repo_type).files)

    def commits(self, repo_id: str, repo_type: str = "model") -> list[FakeCommit]:
        """The history of a repository, oldest first (the first one is the repo creation)."""
        with self._lock:
            return list(self._repo(repo_type, repo_id).commits)

    def _commit(self, repo_id: str, revision: str, repo_type: str) -> FakeCommit:
        with self._lock:
            commit = self._repo(repo_type, repo_id).commit_at(revision)
        if commit is None:
            raise KeyError(f"{repo_type} repo {repo_id!r} has no revision {revision!r}")
        return commit

    # --- pointing clients at the server ---------------------------------------------------------------------------
    def env(self, hf_home: str | os.PathLike) -> dict[str, str]:
        """Environment variables that point huggingface_hub / transformers in a *new* process at this server."""
        hf_home = str(hf_home)
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": hf_home,
            "HF_HUB_CACHE": os.path.join(hf_home, "hub"),
            "HF_XET_CACHE": os.path.join(hf_home, "xet"),
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
            "HF_HUB_DISABLE_XET": "1",  # the fake Hub speaks LFS, not Xet
        }

    @contextlib.contextmanager
    def activate(self, hf_home: str | os.PathLike | None = None) -> Iterator[FakeHub]:
        """Point huggingface_hub and transformers in this process at the fake Hub until the block exits.

        `hf_home` is the cache folder to use (a temporary one that is deleted afterwards when not given). Everything
        changed is restored on exit, including offline mode, so the rest of a test session stays offline.
        """
        from huggingface_hub import constants
        from huggingface_hub import hf_api as hf_api_module

        with contextlib.ExitStack() as stack:
            if hf_home is None:
                hf_home = stack.enter_context(tempfile.TemporaryDirectory(prefix="fake_hub_home_"))
            env = self.env(hf_home)
            for key, value in env.items():
                stack.enter_context(_patched_env(key, value))
            # huggingface_hub derives these module constants from the environment once, at import time.
            host = urlsplit(self.endpoint).hostname
            patches = {
                "ENDPOINT": self.endpoint,
                "HUGGINGFACE_CO_URL_TEMPLATE": self.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
                "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {host}),
                "HF_HUB_OFFLINE": False,
                "HF_HUB_DISABLE_TELEMETRY": True,
                "HF_HUB_DISABLE_XET": True,
                "HF_HOME": env["HF_HOME"],
                "HF_HUB_CACHE": env["HF_HUB_CACHE"],
                "HUGGINGFACE_HUB_CACHE": env["HF_HUB_CACHE"],
                "HF_ASSETS_CACHE": os.path.join(env["HF_HOME"], "assets"),
                "HF_XET_CACHE": env["HF_XET_CACHE"],
                "HF_TOKEN_PATH": os.path.join(env["HF_HOME"], "token"),
                "HF_STORED_TOKENS_PATH": os.path.join(env["HF_HOME"], "stored_tokens"),
                "AGENT_HARNESSES_PATH": os.path.join(env["HF_HOME"], ".agent_harnesses.json"),
                "CHECK_FOR_UPDATE_DONE_PATH": os.path.join(env["HF_HOME"], ".check_for_update_done"),
                "CHECK_FOR_SKILL_UPDATE_DONE_PATH": os.path.join(env["HF_HOME"], ".check_for_skill_update_done"),
            }
            for name, value in patches.items():
                if hasattr(constants, name):
                    stack.enter_context(_patched_attr(constants, name, value))
            # `huggingface_hub.create_repo` & co. are methods of a module-level HfApi built at import time.
            stack.enter_context(_patched_attr(hf_api_module.api, "endpoint", self.endpoint))
            try:
                from transformers.utils import hub as transformers_hub
            except ImportError:  # transformers is optional for pure huggingface_hub tests
                transformers_hub = None
            if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
                # transformers shares one lazily built HfApi; drop it so it is rebuilt with the fake endpoint.
                stack.enter_context(_patched_attr(transformers_hub, "_hf_api", None))
            yield self

    # --- repository operations (called by the request handler) ----------------------------------------------------
    def _repo(self, repo_type: str, repo_id: str) -> FakeRepo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository {repo_id!r} not found", "RepoNotFound")
        return repo

    def _readable_repo(self, repo_type: str, repo_id: str, authorized: bool) -> FakeRepo:
        repo = self._repo(repo_type, repo_id)
        if repo.private and not authorized:
            # The Hub does not reveal that a private repo exists.
            raise HubError(404, f"Repository {repo_id!r} not found", "RepoNotFound")
        return repo

    def _new_commit(
        self, title: str, message: str, files: dict[str, bytes], parent: str | None, lfs: dict[str, str] | None = None
    ) -> FakeCommit:
        self._commit_counter += 1
        payload = json.dumps(
            {
                "parent": parent,
                "title": title,
                "message": message,
                "tree": {path: git_blob_sha(content) for path, content in sorted(files.items())},
                "n": self._commit_counter,
            }
        )
        oid = hashlib.sha1(payload.encode()).hexdigest()
        now = datetime.now(timezone.utc)
        return FakeCommit(
            oid=oid, title=title, message=message, author=self.user, date=now, files=files, lfs=dict(lfs or {})
        )

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> tuple[FakeRepo, bool]:
        """Create a repo with the Hub's initial commit; returns (repo, created)."""
        with self._lock:
            existing = self._repos.get((repo_type, repo_id))
            if existing is not None:
                return existing, False
            repo = FakeRepo(repo_id, repo_type, private, created_at=datetime.now(timezone.utc))
            repo.commits.append(
                self._new_commit("initial commit", "", {".gitattributes": INITIAL_GITATTRIBUTES}, None)
            )
            self._repos[(repo_type, repo_id)] = repo
            return repo, True

    def apply_commit(
        self, repo: FakeRepo, revision: str, header: dict, operations: list[tuple[str, dict]]
    ) -> FakeCommit:
        """Apply NDJSON operations on top of `revision` (a branch) and return the new commit."""
        with self._lock:
            if revision != "main":
                raise HubError(
                    404, f"Invalid rev id: {revision} (FakeHub only has the `main` branch)", "RevisionNotFound"
                )
            parent = header.get("parentCommit")
            if parent and parent != repo.head.oid:
                raise HubError(412, f"A commit has happened since {parent}. Please refresh and try again.")
            files, lfs, modes = dict(repo.head.files), dict(repo.head.lfs), []
            for key, value in operations:
                path = _check_path(value.get("path", ""))
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
                    files[path] = base64.b64decode(value["content"], validate=True)
                    lfs.pop(path, None)
                    modes.append((repo.repo_id, path, "regular"))
                elif key == "lfsFile":
                    oid = value.get("oid")
                    content = self._lfs_objects.get(oid)
                    if value.get("algo", "sha256") != "sha256" or content is None:
                        raise HubError(400, f"LFS object {oid} for {path} was never uploaded (or not with sha256)")
                    if value.get("size") != len(content):
                        raise HubError(400, f"LFS pointer for {path} says {value.get('size')} bytes, object has "
                                            f"{len(content)}")  # fmt: skip
                    files[path], lfs[path] = content, oid
                    modes.append((repo.repo_id, path, "lfs"))
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                    lfs.pop(path, None)
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                        lfs.pop(p, None)
                else:
                    raise HubError(400, f"Unknown commit operation key {key!r}")
            summary = (header.get("summary") or "").strip()
            if not summary:
                raise HubError(400, "The commit summary (commit_message) must not be empty")
            commit = self._new_commit(summary, header.get("description") or "", files, repo.head.oid, lfs)
            repo.commits.append(commit)
            self.upload_modes.extend(modes)
            return commit

    def lfs_batch(self, objects: list[dict]) -> list[dict]:
        """The git-lfs batch answer for an upload: instructions for each object the store lacks."""
        answer = []
        with self._lock:
            for entry in objects:
                oid, size = entry.get("oid"), entry.get("size")
                if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                    raise HubError(422, f"Malformed LFS object {entry!r}: expected a sha256 `oid` and an int `size`")
                if oid in self._lfs_objects:
                    answer.append({"oid": oid, "size": size})  # no actions: already stored
                    continue
                self._lfs_expected[oid] = size
                href = f"{self.endpoint}/lfs-objects/{oid}"
                answer.append({
                    "oid": oid, "size": size, "authenticated": True,
                    "actions": {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}},
                })  # fmt: skip
        return answer

    def store_lfs_object(self, oid: str, content: bytes) -> None:
        with self._lock:
            if oid not in self._lfs_expected:
                raise HubError(403, f"No LFS upload of {oid} was requested through the batch endpoint")
            if hashlib.sha256(content).hexdigest() != oid or len(content) != self._lfs_expected[oid]:
                raise HubError(400, f"The uploaded bytes do not match LFS object {oid} (sha256 or size differ)")
            self._lfs_objects[oid] = content
            del self._lfs_expected[oid]


def _check_path(path: str) -> str:
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in path.rstrip("/").split("/")):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


@contextlib.contextmanager
def _patched_env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


@contextlib.contextmanager
def _patched_attr(obj, name: str, value) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the FakeHub. Every answer has a Content-Length, so connections can be kept alive."""

    fake_hub: FakeHub
    protocol_version = "HTTP/1.1"
    _api = re.compile(
        r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
        r"(?:/(?P<action>revision|tree|paths-info|commits|preupload|commit)(?:/(?P<rev>[^/]+))?(?:/(?P<path>.*))?)?$"
    )
    _lfs_batch = re.compile(r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")
    _lfs_object = re.compile(r"^/lfs-objects/(?P<oid>[0-9a-f]{64})(?P<verify>/verify)?$")
    _resolve = re.compile(
        r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
    )

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    # --- plumbing ---------------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, data, headers: dict | None = None):
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, err: HubError):
        headers = {"X-Error-Message": err.message}
        if err.error_code:
            headers["X-Error-Code"] = err.error_code
        self._json(err.status, {"error": err.message}, headers)

    def _auth(self) -> bool:
        """True for the hub's token, False without one; a wrong token is rejected outright, as on the Hub."""
        header = self.headers.get("Authorization")
        if not header:
            return False
        if header != f"Bearer {self.fake_hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return True

    def _require_auth(self):
        if not self._auth():
            raise HubError(401, "You must be authenticated to write to the Hub (no token was sent)")

    def _dispatch(self):
        hub = self.fake_hub
        url = urlsplit(self.path)
        hub.requests.append((self.command, url.path))
        try:
            handled = self._route(url.path, parse_qs(url.query))
        except HubError as err:
            self._error(err)
            return
        if not handled:
            hub.unhandled.append((self.command, url.path))
            self._json(404, {"error": f"FakeHub does not implement {self.command} {url.path}"})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # --- routes -------------------------------------------------------------------------------------------------
    def _route(self, path: str, query: dict) -> bool:
        hub = self.fake_hub
        method = self.command
        if method == "GET" and path == "/api/whoami-v2":
            self._require_auth()
            self._json(200, {
                "type": "user", "name": hub.user, "fullname": hub.user, "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}},
            })  # fmt: skip
            return True
        if method == "POST" and path == "/api/repos/create":
            self._create_repo(json.loads(self._body() or b"{}"))
            return True
        if method == "DELETE" and path == "/api/repos/delete":
            self._require_auth()
            payload = json.loads(self._body() or b"{}")
            repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
            repo_type = payload.get("type") or "model"
            with hub._lock:
                hub._repo(repo_type, repo_id)
                del hub._repos[(repo_type, repo_id)]
            self._json(200, {})
            return True
        if method == "POST" and path == "/api/validate-yaml":
            self._validate_yaml(json.loads(self._body() or b"{}"))
            return True
        match = self._api.match(path)
        if match is not None:
            return self._repo_api(match, query)
        match = self._lfs_batch.match(path)
        if match is not None and method == "POST":
            self._require_auth()
            payload = json.loads(self._body() or b"{}")
            if payload.get("operation") != "upload":
                raise HubError(422, f"FakeHub's LFS batch endpoint only uploads, got {payload.get('operation')!r}")
            with hub._lock:
                hub._repo((match.group("type") or "models")[:-1], match.group("repo"))
            answer = {
                "transfer": "basic",
                "objects": hub.lfs_batch(payload.get("objects") or []),
                "hash_algo": "sha256",
            }
            self._send(200, json.dumps(answer).encode(), content_type="application/vnd.git-lfs+json")
            return True
        match = self._lfs_object.match(path)
        if match is not None:
            oid = match.group("oid")
            if method == "PUT" and not match.group("verify"):
                hub.store_lfs_object(oid, self._body())
                self._send(200)
                return True
            if method == "POST" and match.group("verify"):
                self._require_auth()
                payload = json.loads(self._body() or b"{}")
                with hub._lock:
                    content = hub._lfs_objects.get(oid)
                if content is None or payload.get("oid") != oid or payload.get("size") != len(content):
                    raise HubError(404, f"LFS object {oid} is not stored with size {payload.get('size')}")
                self._json(200, {})
                return True
        match = self._resolve.match(path)
        if match is not None and method in ("GET", "HEAD"):
            self._resolve_file(match)
            return True
        return False

    def _create_repo(self, payload: dict):
        self._require_auth()
        hub = self.fake_hub
        name, organization = payload.get("name"), payload.get("organization")
        if not name or not _REPO_NAME.match(name) or (organization and not _REPO_NAME.match(organization)):
            raise HubError(400, f"Invalid repo name {organization!r}/{name!r}")
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo_id = f"{organization or hub.user}/{name}"
        repo, created = hub.create_repo(repo_id, repo_type, private)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{hub.endpoint}/{prefix}{repo_id}"
        if not created:
            # The client reads `url` from this 409 answer when called with exist_ok=True.
            self._json(409, {"error": "You already created this repo", "url": url})
            return
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, payload: dict):
        content = payload.get("content", "")
        try:
            metadata = _front_matter(content.encode("utf-8"))
            if metadata is not None and payload.get("repoType", "model") == "model":
                from huggingface_hub import ModelCardData

                # Same strictness as the Hub on `model-index`: malformed eval results are an error, not a warning.
                ModelCardData(**metadata, ignore_metadata_errors=False)
        except (yaml.YAMLError, ValueError, TypeError, KeyError) as err:
            self._json(400, {"errors": [{"message": f"Invalid YAML metadata in README.md: {err}"}]})
            return
        self._json(200, {"errors": [], "warnings": []})

    def _repo_api(self, match: re.Match, query: dict) -> bool:
        hub = self.fake_hub
        method, action = self.command, match.group("action")
        repo_type = match.group("type")[:-1]
        repo_id = match.group("repo")
        revision = unquote(match.group("rev") or "main")
        authorized = self._auth()
        if action in ("preupload", "commit"):
            if method != "POST":
                return False
            self._require_auth()
        with hub._lock:
            repo = hub._readable_repo(repo_type, repo_id, authorized)
            commit = repo.commit_at(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

        if action in (None, "revision") and method == "GET":
            self._json(200, self._repo_info(repo, commit))
        elif action == "tree" and method == "GET":
            self._json(200, self._tree(commit, unquote(match.group("path") or ""), _true(query.get("recursive"))))
        elif action == "paths-info" and method == "POST":
            form = parse_qs(self._body().decode())
            entries = []
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.files:
                    entries.append(self._file_entry(commit, path))
                elif any(p.startswith(path + "/") for p in commit.files):
                    entries.append({"type": "directory", "oid": _tree_oid(commit, path), "path": path, "size": 0})
            self._json(200, entries)
        elif action == "commits" and method == "GET":
            history = repo.commits[: repo.commits.index(commit) + 1]
            self._json(200, [
                {"id": c.oid, "title": c.title, "message": c.message, "authors": [{"user": c.author}], "date": _iso(c.date)}
                for c in reversed(history)
            ])  # fmt: skip
        elif action == "preupload":
            files = json.loads(self._body() or b"{}").get("files", [])
            answer = []
            for entry in files:
                path = entry["path"]
                existing = repo.head.files.get(path)
                mode = "lfs" if entry.get("size", 0) >= hub.lfs_threshold else "regular"
                # The oid the client compares with its own to skip unchanged files: sha256 for LFS, git sha1 else.
                if existing is None:
                    oid = None
                elif mode == "lfs":
                    oid = repo.head.lfs.get(path) or hashlib.sha256(existing).hexdigest()
                else:
                    oid = git_blob_sha(existing)
                answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            self._json(200, {"files": answer, "commitOid": repo.head.oid})
        elif action == "commit":
            if _true(query.get("create_pr")):
                raise HubError(400, "FakeHub does not support pull requests (create_pr=True)")
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "The commit payload must start with a header line")
            operations = [(line["key"], line["value"]) for line in lines[1:]]
            new = hub.apply_commit(repo, revision, lines[0]["value"], operations)
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            self._json(200, {
                "success": True, "commitOid": new.oid, "commitMessage": new.title,
                "commitUrl": f"{hub.endpoint}/{prefix}{repo_id}/commit/{new.oid}", "pullRequestUrl": None,
            })  # fmt: skip
        else:
            return False
        return True

    def _repo_info(self, repo: FakeRepo, commit: FakeCommit) -> dict:
        info = {
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "createdAt": _iso(repo.created_at),
            "lastModified": _iso(commit.date),
            "siblings": [
                {
                    "rfilename": path,
                    "size": len(content),
                    "blobId": git_blob_sha(content),
                    **({"lfs": _lfs_info(commit, path)} if path in commit.lfs else {}),
                }
                for path, content in sorted(commit.files.items())
            ],  # fmt: skip
            "tags": [],
        }
        if repo.repo_type != "model":
            return info
        # What the Hub derives from README.md and config.json, so `model_info()` shows the pushed metadata.
        card = None
        if "README.md" in commit.files:
            with contextlib.suppress(yaml.YAMLError, ValueError, UnicodeDecodeError):
                card = _front_matter(commit.files["README.md"])
        if card:
            info["cardData"] = card
            info["tags"] = list(card.get("tags") or [])
            for key in ("pipeline_tag", "library_name"):
                if card.get(key):
                    info[key] = card[key]
            if card.get("model-index"):
                info["model-index"] = card["model-index"]
        if "config.json" in commit.files:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                config = json.loads(commit.files["config.json"])
                info["config"] = {k: config[k] for k in ("architectures", "model_type", "auto_map") if k in config}
                if "auto_map" in config and "custom_code" not in info["tags"]:
                    info["tags"].append("custom_code")
        return info

    @staticmethod
    def _file_entry(commit: FakeCommit, path: str) -> dict:
        content = commit.files[path]
        entry = {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": path}
        if path in commit.lfs:
            entry["lfs"] = {
                "oid": commit.lfs[path],
                "size": len(content),
                "pointerSize": len(_lfs_pointer(commit, path)),
            }
        return entry

    def _tree(self, commit: FakeCommit, folder: str, recursive: bool) -> list[dict]:
        folder = folder.strip("/")
        prefix = folder + "/" if folder else ""
        if folder and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"Path {folder!r} not found in the repo", "EntryNotFound")
        entries: dict[str, dict] = {}
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            parts = PurePosixPath(path[len(prefix) :]).parts
            # Every folder on the way is listed (recursive) or only the first level (non-recursive).
            depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
            for i in range(1, depth + 1):
                sub = prefix + "/".join(parts[:i])
                entries.setdefault(sub, {"type": "directory", "oid": _tree_oid(commit, sub), "size": 0, "path": sub})
            if recursive or len(parts) == 1:
                entries[path] = self._file_entry(commit, path)
        return list(entries.values())

    def _resolve_file(self, match: re.Match):
        hub = self.fake_hub
        repo_type = (match.group("type") or "models")[:-1]
        repo_id, revision = match.group("repo"), unquote(match.group("rev"))
        path = unquote(match.group("path"))
        with hub._lock:
            repo = hub._readable_repo(repo_type, repo_id, self._auth())
            commit = repo.commit_at(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        content = commit.files.get(path)
        if content is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_sha(content)}"', "Accept-Ranges": "bytes"}
        if path in commit.lfs:  # the Hub names an LFS file by its sha256 (the cache's blob name)
            headers.update({"ETag": f'"{commit.lfs[path]}"', "X-Linked-Etag": f'"{commit.lfs[path]}"',
                            "X-Linked-Size": str(len(content))})  # fmt: skip
        byte_range = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if byte_range is not None:
            start = int(byte_range.group(1))
            end = int(byte_range.group(2)) if byte_range.group(2) else len(content) - 1
            end = min(end, len(content) - 1)
            if start > end:
                self._send(416, b"", {**headers, "Content-Range": f"bytes */{len(content)}"})
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            self._send(206, content[start : end + 1], headers, "application/octet-stream")
            return
        self._send(200, content, headers, "application/octet-stream")


def _lfs_pointer(commit: FakeCommit, path: str) -> bytes:
    """The git-lfs pointer file that stands in git for an LFS file."""
    oid, size = commit.lfs[path], len(commit.files[path])
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def _lfs_info(commit: FakeCommit, path: str) -> dict:
    return {
        "size": len(commit.files[path]),
        "sha256": commit.lfs[path],
        "pointerSize": len(_lfs_pointer(commit, path)),
    }


def _tree_oid(commit: FakeCommit, folder: str) -> str:
    listing = "".join(f"{p}:{git_blob_sha(c)}" for p, c in sorted(commit.files.items()) if p.startswith(folder + "/"))
    return hashlib.sha1(listing.encode()).hexdigest()


def _true(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true", "yes")


__all__ = ["FakeCommit", "FakeHub", "FakeRepo", "git_blob_sha"]
