"""The loopback fake Hub answers huggingface_hub 2.4 the way the Hub does: uploads, history, downloads, errors."""

import base64
import hashlib
import json

import huggingface_hub
import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from hf_clipzoo.testing import FakeHub


def _folder(tmp_path, files: dict[str, bytes]):
    folder = tmp_path / "upload"
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


FILES = {
    "README.md": b"---\nlicense: mit\ntags:\n- tiny\n---\n# tiny\n",
    "config.json": b'{"model_type": "clipzoo-clip"}',
    "weights/model.safetensors": bytes(range(256)) * 40,  # binary: the real Hub would want LFS, we stay inline
}


def test_git_blob_sha_matches_git():
    # `git hash-object` of "hello\n" is a well-known constant.
    from hf_clipzoo.testing import git_blob_sha

    assert git_blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_create_upload_list_download_round_trip(fake_hub, tmp_path):
    assert constants.ENDPOINT == fake_hub.endpoint and not constants.HF_HUB_OFFLINE
    url = huggingface_hub.create_repo("org/tiny")
    assert url == f"{fake_hub.endpoint}/org/tiny" and url.repo_id == "org/tiny"
    assert huggingface_hub.create_repo("org/tiny", exist_ok=True).repo_id == "org/tiny"
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError, match="409"):
        huggingface_hub.create_repo("org/tiny")

    commit = huggingface_hub.upload_folder(
        repo_id="org/tiny", folder_path=_folder(tmp_path, FILES), commit_message="up"
    )
    assert commit.oid == fake_hub.commits("org/tiny")[-1].oid and commit.commit_url.endswith(commit.oid)
    assert sorted(huggingface_hub.list_repo_files("org/tiny")) == sorted([".gitattributes", *FILES])
    assert fake_hub.files("org/tiny") == {".gitattributes": fake_hub.files("org/tiny")[".gitattributes"], **FILES}
    for name, content in FILES.items():
        path = huggingface_hub.hf_hub_download("org/tiny", name)
        assert open(path, "rb").read() == content
        assert path.startswith(str(constants.HF_HUB_CACHE))  # the throw-away cache, not the user's
    # Every request was answered by a route: none fell through to the catch-all 404.
    assert fake_hub.unhandled == []


def test_history_revisions_and_repo_info(fake_hub, tmp_path):
    api = HfApi()
    api.create_repo("org/hist")
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id="org/hist", commit_message="one")
    second = api.upload_file(path_or_fileobj=b"v2", path_in_repo="a.txt", repo_id="org/hist", commit_message="two")
    assert first.oid != second.oid
    # An unchanged file is skipped by the client thanks to the `oid` the preupload answer carries.
    again = api.upload_file(path_or_fileobj=b"v2", path_in_repo="a.txt", repo_id="org/hist", commit_message="noop")
    assert again.oid == second.oid
    commits = api.list_repo_commits("org/hist")
    assert [c.title for c in commits] == ["two", "one", "initial commit"] and commits[0].commit_id == second.oid
    assert open(api.hf_hub_download("org/hist", "a.txt", revision=first.oid), "rb").read() == b"v1"
    assert open(api.hf_hub_download("org/hist", "a.txt"), "rb").read() == b"v2"

    info = api.model_info("org/hist")
    assert info.sha == second.oid and [s.rfilename for s in info.siblings] == [".gitattributes", "a.txt"]
    assert api.model_info("org/hist", revision=first.oid).sha == first.oid
    # Blob ids are git's: the same sha1 a `git hash-object` would print.
    sibling = next(s for s in info.siblings if s.rfilename == "a.txt")
    assert sibling.blob_id == hashlib.sha1(b"blob 2\0v2").hexdigest()

    api.delete_file("a.txt", repo_id="org/hist", commit_message="rm")
    assert api.list_repo_files("org/hist") == [".gitattributes"]
    assert fake_hub.files("org/hist", revision=second.oid)["a.txt"] == b"v2"  # history is kept


def test_tree_paths_info_and_card_metadata(fake_hub, tmp_path):
    api = HfApi()
    api.create_repo("org/tree")
    api.upload_folder(repo_id="org/tree", folder_path=_folder(tmp_path, FILES))
    top = {entry.path: type(entry).__name__ for entry in api.list_repo_tree("org/tree")}
    assert top == {
        ".gitattributes": "RepoFile",
        "README.md": "RepoFile",
        "config.json": "RepoFile",
        "weights": "RepoFolder",
    }
    infos = {e.path: e for e in api.get_paths_info("org/tree", ["weights", "config.json", "missing.txt"])}
    assert set(infos) == {"weights", "config.json"} and infos["config.json"].size == len(FILES["config.json"])
    info = api.model_info("org/tree")
    assert info.card_data.license == "mit" and info.tags == ["tiny"]
    assert info.config == {"model_type": "clipzoo-clip"}


def test_errors_map_to_huggingface_hub_exceptions(fake_hub):
    api = HfApi()
    api.create_repo("org/err")
    with pytest.raises(EntryNotFoundError):
        api.hf_hub_download("org/err", "missing.json")
    with pytest.raises(RepositoryNotFoundError):
        api.hf_hub_download("org/nope", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/nope")
    with pytest.raises(RevisionNotFoundError):
        api.hf_hub_download("org/err", ".gitattributes", revision="0" * 40)
    assert api.file_exists("org/err", ".gitattributes") and not api.file_exists("org/err", "missing.json")
    assert api.repo_exists("org/err") and not api.repo_exists("org/nope")


def test_auth_private_repos_and_invalid_readme(fake_hub):
    assert HfApi().whoami()["name"] == fake_hub.user
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError, match="401"):
        HfApi(token="hf_wrongtoken123").create_repo("org/x")
    HfApi().create_repo("org/secret", private=True)
    assert HfApi().model_info("org/secret").private
    with pytest.raises(RepositoryNotFoundError):  # anonymous users cannot see that a private repo exists
        HfApi(token=False).model_info("org/secret")
    # README metadata is validated before the commit, as on the Hub.
    bad = b"---\nmodel-index:\n- name: x\n  results: [{task: {}}]\n---\n"
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        HfApi().upload_file(path_or_fileobj=bad, path_in_repo="README.md", repo_id="org/secret")
    assert "README.md" not in fake_hub.files("org/secret")


def test_activate_restores_offline_settings(tmp_path):
    before = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, HfApi().endpoint)
    with FakeHub() as hub:
        with hub.activate(tmp_path / "home"):
            assert (constants.ENDPOINT, constants.HF_HUB_OFFLINE) == (hub.endpoint, False)
            assert huggingface_hub.hf_api.api.endpoint == hub.endpoint
        assert (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, HfApi().endpoint) == before
    with pytest.raises(RuntimeError, match="not running"):
        _ = hub.endpoint


def test_commit_payload_is_checked(fake_hub):
    """Raw requests: an LFS pointer or a bad path is refused with a clear message instead of stored."""
    import httpx2

    HfApi().create_repo("org/raw")
    headers = {"Authorization": f"Bearer {fake_hub.token}", "Content-Type": "application/x-ndjson"}
    url = f"{fake_hub.endpoint}/api/models/org/raw/commit/main"
    header = b'{"key": "header", "value": {"summary": "s"}}\n'
    lfs = b'{"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "00", "size": 1}}\n'
    answer = httpx2.post(url, content=header + lfs, headers=headers)
    assert answer.status_code == 400 and "LFS" in answer.json()["error"]
    content = base64.b64encode(b"x").decode()
    escape = json.dumps({"key": "file", "value": {"path": "../x", "content": content, "encoding": "base64"}}).encode()
    escape += b"\n"
    assert httpx2.post(url, content=header + escape, headers=headers).status_code == 400
    assert len(fake_hub.commits("org/raw")) == 1
