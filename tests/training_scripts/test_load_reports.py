"""Fine-tuning from a CLIP baseline prints no transformers LOAD REPORT for keys that are new by design.

FFF, DreamLIP and CLIP-FSAR start from a CLIP / SigLIP folder (`--model_name_or_path`); their new parameters and the
baseline's unused ones are declared in the model classes (`_keys_to_ignore_on_load_*`). A genuinely wrong key still
shows in the report.
"""

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers.utils import logging as transformers_logging

from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from tests.training_scripts.script_utils import load_training_script

FINE_TUNED_FROM_A_BASELINE = ("fff", "dreamlip", "clip_fsar")


class Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_messages():
    """Everything transformers logs while the test runs, at its default (warning) verbosity."""
    records = Records()
    library_logger = logging.getLogger("transformers")
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    library_logger.addHandler(records)
    yield records.messages
    library_logger.removeHandler(records)
    transformers_logging.set_verbosity(verbosity)


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """Tiny CLIP (softmax) and SigLIP (sigmoid) baseline folders, as `training_scripts/clip.py` writes them."""
    root = tmp_path_factory.mktemp("baselines")
    torch.manual_seed(0)
    for loss_type in ("softmax", "sigmoid"):
        ZooCLIPModel(ZooCLIPConfig.from_preset("world-micro", loss_type=loss_type)).save_pretrained(root / loss_type)
    return root


def build_from(script_name: str, model_dir, output_dir):
    script = load_training_script(script_name)
    args = script.parse_args(["--model_name_or_path", str(model_dir), "--output_dir", str(output_dir)])
    return script.build_model(args)[0]


@pytest.mark.parametrize("loss_type", ["softmax", "sigmoid"])
@pytest.mark.parametrize("script_name", FINE_TUNED_FROM_A_BASELINE)
def test_new_by_design_keys_print_no_load_report(script_name, loss_type, baselines, tmp_path, transformers_messages):
    build_from(script_name, baselines / loss_type, tmp_path / "out")
    reports = [message for message in transformers_messages if "LOAD REPORT" in message]
    assert reports == []


@pytest.mark.parametrize("script_name", FINE_TUNED_FROM_A_BASELINE)
def test_a_wrong_key_still_shows_in_the_load_report(script_name, baselines, tmp_path, transformers_messages):
    broken = tmp_path / "broken"
    ZooCLIPModel.from_pretrained(baselines / "softmax").save_pretrained(broken)
    weights = load_file(broken / "model.safetensors")
    weights["text_projection.weihgt"] = weights.pop("text_projection.weight")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    transformers_messages.clear()
    build_from(script_name, broken, tmp_path / "out")
    report = "\n".join(message for message in transformers_messages if "LOAD REPORT" in message)
    assert "text_projection.weihgt" in report and "UNEXPECTED" in report
    assert "text_projection.weight" in report and "MISSING" in report
