import pytest

# The loopback Hub fixture (`fake_hub`), for the scripts' --push_to_hub.
from hf_clipzoo.testing import fake_hub  # noqa: F401
from tests.training_scripts.script_utils import free_port
from tests.training_scripts.shared_launch import launch_runs


@pytest.fixture(scope="session")
def _shared_launch_outcomes(request, tmp_path_factory):
    # Every selected test's 2-process run at once, on first use: one `accelerate launch` for the session.
    return launch_runs(request.session.items, tmp_path_factory.mktemp("shared_launch"), free_port())


@pytest.fixture
def shared_launch(request, _shared_launch_outcomes):
    """This test's run in the session's one 2-process launch (`in_shared_launch`)."""
    return _shared_launch_outcomes[request.node.nodeid]
