"""DreamLIP's losses keep the invariant of the loss package: 2 gloo processes × uneven local batches (3 + 2 images,
3 caption slots each), with DDP's gradient averaging, give the loss and gradients of one process on all 5 images.

The worker runs every case of `_distributed_grouping_cases.py` in one launch (shared with `test_distributed.py`);
this process computes the single-process reference with the same code and compares loss and every parameter gradient
at atol 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.losses.distributed_utils import assert_cases_match, load_cases_module

WORKER = Path(__file__).resolve().parent / "_distributed_grouping_cases.py"


@pytest.fixture(scope="module")
def distributed_results(two_process_results):
    return two_process_results[WORKER.stem]


@pytest.mark.parametrize("case", load_cases_module(WORKER).CASES)
def test_two_processes_match_one_process(distributed_results, case):
    reference = load_cases_module(WORKER).run_case(case)  # not distributed here: one process, the global batch
    assert_cases_match(distributed_results, reference, case)
    # Far-from-zero gradients: a distributed run that dropped the other rank's contributions would not match.
    assert reference["grad.text_proj.weight"].abs().max() > 1e-3
    if case.startswith("sgl"):
        assert reference["grad.patch_proj.weight"].abs().max() > 1e-3
        assert reference["grad.logit_scale_local"].abs() > 1e-4
    else:
        assert reference["grad.image_proj.weight"].abs().max() > 1e-3
