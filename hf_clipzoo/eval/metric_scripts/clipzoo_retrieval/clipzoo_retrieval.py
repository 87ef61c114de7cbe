"""`evaluate` module: image-text retrieval Recall@k in both directions, several captions per image."""

import datasets
import evaluate

from hf_clipzoo.eval.metrics import retrieval_recall, text_to_image_from_caption_ids

_DESCRIPTION = """
Recall@k of image-to-text and text-to-image retrieval (the CLIP / ALBEF protocol on COCO and Flickr30k).
One input row per image: its similarities to *all* captions of the evaluation set, and the indices of its own
captions. An image query is correct at k when its best-ranked caption is in the top k; a caption query when its
image is. A negative that ties with a positive is ranked ahead of it. Computed by
`hf_clipzoo.eval.metrics.retrieval_recall`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): for each image, its similarity to every caption (all rows the same length).
    references (`list[list[int]]`): for each image, the indices of its captions; every caption belongs to one image.
    ks (`tuple[int]`, *optional*, defaults to `(1, 5, 10)`): the recall cut-offs.
Returns:
    image_to_text_R@k and text_to_image_R@k (`float`) for each k.
Examples:
    >>> from hf_clipzoo.eval import load_metric
    >>> metric = load_metric("clipzoo_retrieval")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[[0], [1]], ks=[1])
    {'image_to_text_R@1': 1.0, 'text_to_image_R@1': 1.0}
"""

_CITATION = """
@inproceedings{radford2021clip,
  title={Learning Transferable Visual Models From Natural Language Supervision},
  author={Radford, Alec and Kim, Jong Wook and Hallacy, Chris and others},
  booktitle={ICML},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClipzooRetrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references, ks=(1, 5, 10)):
        lengths = {len(row) for row in predictions}
        if len(lengths) != 1:
            raise ValueError(f"Every image row must score all captions; got rows of lengths {sorted(lengths)}.")
        text_to_image = text_to_image_from_caption_ids(references, num_texts=lengths.pop())
        return retrieval_recall(predictions, text_to_image, ks=ks)
