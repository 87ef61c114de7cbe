"""Test helpers for hf-clipzoo and for projects built on it: a loopback fake Hub and its pytest fixture.

    # conftest.py (importing the fixture there keeps test modules free of unused-import noise)
    from hf_clipzoo.testing import fake_hub  # noqa: F401

    # test_x.py
    def test_push(fake_hub):
        model.push_to_hub("org/tiny")
        assert "model.safetensors" in fake_hub.files("org/tiny")

The fixture starts a `FakeHub` and points huggingface_hub and transformers at it for one test (online, with a
throw-away cache and token); everything is restored afterwards, so the rest of the suite stays offline.
"""

from __future__ import annotations

from .fake_hub import FakeCommit, FakeHub, FakeRepo, git_blob_sha

try:
    import pytest
except ImportError:  # pytest is a test-only dependency; the FakeHub itself does not need it
    pytest = None

if pytest is not None:

    @pytest.fixture
    def fake_hub(tmp_path_factory):
        """A running `FakeHub`, active for the duration of the test (see `FakeHub.activate`)."""
        with FakeHub() as hub, hub.activate(tmp_path_factory.mktemp("fake_hub_home")):
            yield hub


__all__ = ["FakeCommit", "FakeHub", "FakeRepo", "git_blob_sha"] + (["fake_hub"] if pytest is not None else [])
