"""Fixtures of the evaluation tests: one tiny random CLIP model and processor per module."""

from __future__ import annotations

import pytest
import torch
from eval_testing_utils import tiny_clip_config, tiny_processor
from transformers import CLIPModel, CLIPProcessor


@pytest.fixture(scope="module")
def clip_model() -> CLIPModel:
    torch.manual_seed(0)
    return CLIPModel(tiny_clip_config()).eval()


@pytest.fixture(scope="module")
def processor() -> CLIPProcessor:
    return tiny_processor()
