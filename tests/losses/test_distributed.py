"""THE invariant of the loss package: N processes × local batches, with DDP's gradient averaging, give the same loss
and the same gradients as one process on the concatenated batch.

Two CPU processes (gloo) run every case of `_distributed_cases.py` in one launch (shared with the DreamLIP cases of
`test_distributed_grouping.py`, see conftest.py); this process computes the single-process reference with the very
same code and compares loss and gradients of every parameter upstream of the embeddings (two Linears, log
temperature, bias) at atol 1e-5. Most cases use uneven per-rank batches (3 + 2 rows), and the masked cases have
positives that cross ranks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.losses.distributed_utils import assert_cases_match, load_cases_module

WORKER = Path(__file__).resolve().parent / "_distributed_cases.py"


@pytest.fixture(scope="module")
def distributed_results(two_process_results):
    return two_process_results[WORKER.stem]


@pytest.mark.parametrize("case", load_cases_module(WORKER).CASES)
def test_two_processes_match_one_process(distributed_results, case):
    reference = load_cases_module(WORKER).run_case(case)  # not distributed here: one process, the global batch
    assert_cases_match(distributed_results, reference, case)
    if "num_mined" in reference:  # FFF: the cross-rank duplicates were mined (4 image-image + 2 text-text pairs)
        assert reference["num_mined"].item() >= 6
    # The comparison would fail if the distributed run dropped gradients: they are far from zero.
    assert reference["grad.image_proj.weight"].abs().max() > 1e-3
    assert reference["grad.text_proj.weight"].abs().max() > 1e-3
