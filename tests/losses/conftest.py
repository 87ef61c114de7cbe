from pathlib import Path

import pytest

from tests.losses.distributed_utils import run_two_processes

CASES_MODULES = [
    Path(__file__).resolve().parent / name for name in ("_distributed_cases.py", "_distributed_grouping_cases.py")
]


@pytest.fixture(scope="session")
def two_process_results(tmp_path_factory):
    """Every distributed-invariant case module, run in one 2-process launch; results by module stem."""
    return run_two_processes(CASES_MODULES, tmp_path_factory.mktemp("distributed_losses"))
