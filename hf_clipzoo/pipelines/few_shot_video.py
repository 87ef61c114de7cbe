"""Few-shot video classification: labelled support videos + query videos -> a ranked label list per query.

`FewShotVideoClassifier(model, processor)` works with any model of the zoo that scores an N-way episode the way
CLIP-FSAR does (`model(support_pixel_values, support_labels, query_pixel_values, class_input_ids, ...)` returning
`logits [N·Q, N]` = negative alignment distances). It is a plain callable rather than a `transformers.Pipeline`:
a pipeline maps one input to one output, while an episode is a *set* of supports that only makes sense together
with its queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class FewShotVideoClassifier:
    """Classify query videos among the classes of labelled support videos.

    Args:
        model: a `CLIPFSARModel` (or a model with the same episode interface).
        processor: its `CLIPFSARProcessor` (videos -> `pixel_values`, class names -> prompt token ids).
        device (*optional*): where to run; defaults to the model's device.

    Call with `support_videos` (K videos for each class; lists of PIL frames, `[T, H, W, 3]` uint8 arrays or video
    files), `support_labels` (their class names, strings; every class needs the same number of videos) and
    `query_videos`. Returns, per query, `[{"label": name, "score": p}, ...]` sorted by score, where the scores are the
    softmax over the classes of the negative distances (`top_k` keeps the best ones).
    """

    def __init__(self, model, processor, device: str | torch.device | None = None):
        self.model = model
        self.processor = processor
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if device is not None:
            self.model.to(self.device)

    def __call__(
        self,
        support_videos: Sequence,
        support_labels: Sequence[str],
        query_videos: Sequence,
        top_k: int | None = None,
    ) -> list[list[dict]]:
        if not isinstance(support_videos, Sequence) or len(support_videos) == 0:
            raise ValueError("`support_videos` must be a non-empty list of videos.")
        if not isinstance(query_videos, Sequence) or len(query_videos) == 0:
            raise ValueError("`query_videos` must be a non-empty list of videos.")
        if isinstance(support_labels, str) or len(support_labels) != len(support_videos):
            raise ValueError(
                f"`support_labels` must be a list with one class name per support video ({len(support_videos)}), "
                f"got {support_labels!r}."
            )
        if not all(isinstance(label, str) and label.strip() for label in support_labels):
            raise ValueError("`support_labels` must be non-empty strings (the class names).")
        class_names = list(dict.fromkeys(support_labels))  # first-appearance order
        counts = {name: list(support_labels).count(name) for name in class_names}
        if len(set(counts.values())) != 1:
            raise ValueError(f"Every class needs the same number of support videos (K); got {counts}.")
        if top_k is not None and top_k < 1:
            raise ValueError(f"`top_k` must be >= 1 or None, got {top_k}.")
        index = {name: i for i, name in enumerate(class_names)}

        support = self.processor(videos=list(support_videos), return_tensors="pt")["pixel_values"]
        query = self.processor(videos=list(query_videos), return_tensors="pt")["pixel_values"]
        text = self.processor(class_names=class_names, return_tensors="pt")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(
                    support_pixel_values=support.to(self.device),
                    support_labels=torch.tensor([index[name] for name in support_labels], device=self.device),
                    query_pixel_values=query.to(self.device),
                    class_input_ids=text["input_ids"].to(self.device),
                    class_attention_mask=text["attention_mask"].to(self.device),
                ).logits
        finally:
            self.model.train(was_training)
        scores = logits.float().softmax(dim=-1).cpu()
        keep = len(class_names) if top_k is None else min(top_k, len(class_names))
        results = []
        for row in scores:
            values, order = row.sort(descending=True)
            results.append(
                [
                    {"label": class_names[i], "score": float(v)}
                    for v, i in zip(values[:keep].tolist(), order[:keep].tolist())
                ]
            )
        return results


__all__ = ["FewShotVideoClassifier"]
