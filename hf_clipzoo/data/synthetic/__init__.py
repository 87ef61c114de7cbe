"""The embedded world: a procedural, seeded dataset generator that every method trains and evaluates on offline.

No pretrained weights or benchmark datasets exist offline, so the project carries its own small world with ground
truth for every metric (DESIGN.md section 5). Everything is deterministic given `WorldConfig.seed`, returned as
in-memory `datasets.Dataset`s, and writable in the formats the real-data loaders read (`writers`):

* `make_scenes`: 1-4 objects (shape x colour x size x position x orientation) on textured backgrounds, with
  semantic / instance masks (GroupViT), a noisy short alt-text, a long description and K pseudo-captions
  (FFF, DreamLIP); `false_negative_rate` measures the in-batch false negatives the short captions cause;
* `make_mmvp_pairs`: pairs of images differing in exactly one attribute, with their two statements (DIVA);
* `make_action_videos`: short videos whose class depends on frame order, split into meta-train / val / test classes
  (CLIP-FSAR, MA-CLIP);
* `make_classification`: 64-class colour x shape classification with train / val / test splits (APE, Tip-Adapter).

Example:
    >>> from hf_clipzoo.data.synthetic import WorldConfig, make_scenes, false_negative_rate
    >>> ds = make_scenes(256, config=WorldConfig(seed=0, image_size=64))
    >>> rate = false_negative_rate(ds["caption"], batch_size=256)

Speed: ``python -m hf_clipzoo.data.synthetic --benchmark`` measures scenes per second on one core.
"""

from .captions import (
    GENERIC_CAPTIONS,
    PSEUDO_CAPTION_TEMPLATES,
    false_negative_rate,
    long_caption,
    nouns,
    pseudo_captions,
    short_caption,
)
from .classification import CLASSIFICATION_TEMPLATES, class_names, make_classification
from .config import MIN_IMAGE_SIZE, SCENE_SPLITS, VIDEO_SPLITS, WorldConfig
from .mmvp import MMVP_CATEGORIES, make_mmvp_pairs, sample_mmvp_pair
from .render import BackgroundSpec, draw_object, render_background, shape_mask
from .scenes import generate_scene, make_scenes
from .spec import OBJECT_ATTRIBUTES, ObjectSpec, SceneSpec, render_scene, sample_scene
from .videos import (
    ACTION_CLASSES,
    ORDER_INDEPENDENT_ACTIONS,
    TrackSpec,
    VideoSpec,
    generate_action_video_spec,
    make_action_videos,
    render_video,
    reverse_action,
    sample_video,
)
from .vocab import (
    COLOURS,
    ORIENTATIONS,
    ORIENTED_SHAPES,
    POSITIONS,
    SEGMENTATION_CLASSES,
    SHAPES,
    SIZES,
    TEXTURES,
)
from .writers import write_csv, write_imagefolder, write_video_folder, write_webdataset

__all__ = [
    "ACTION_CLASSES",
    "BackgroundSpec",
    "CLASSIFICATION_TEMPLATES",
    "COLOURS",
    "GENERIC_CAPTIONS",
    "MIN_IMAGE_SIZE",
    "MMVP_CATEGORIES",
    "OBJECT_ATTRIBUTES",
    "ORDER_INDEPENDENT_ACTIONS",
    "ORIENTATIONS",
    "ORIENTED_SHAPES",
    "ObjectSpec",
    "POSITIONS",
    "PSEUDO_CAPTION_TEMPLATES",
    "SCENE_SPLITS",
    "SEGMENTATION_CLASSES",
    "SHAPES",
    "SIZES",
    "SceneSpec",
    "TEXTURES",
    "TrackSpec",
    "VIDEO_SPLITS",
    "VideoSpec",
    "WorldConfig",
    "class_names",
    "draw_object",
    "false_negative_rate",
    "generate_action_video_spec",
    "generate_scene",
    "long_caption",
    "make_action_videos",
    "make_classification",
    "make_mmvp_pairs",
    "make_scenes",
    "nouns",
    "pseudo_captions",
    "render_background",
    "render_scene",
    "render_video",
    "reverse_action",
    "sample_mmvp_pair",
    "sample_scene",
    "sample_video",
    "shape_mask",
    "short_caption",
    "write_csv",
    "write_imagefolder",
    "write_video_folder",
    "write_webdataset",
]
