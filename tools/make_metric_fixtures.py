"""Writes pytorch-grad-cam 1.5.7's metric values for tests/metrics.rs: DropInConfidence, IncreaseInConfidence and
ROAD (MoRF and LeRF at each of its default percentiles) on the synthetic-weight resnet18.

Dev-only. Needs what tools/make_cam_fixtures.py needs, plus scipy (pytorch-grad-cam's ROAD imports it).

    python tools/make_metric_fixtures.py

Input: fixtures/models/inputs/chelsea.npy, class = top-1, target = its logit
(ClassifierOutputTarget: the synthetic model's probabilities are too flat to compare). The map is a formula both sides compute exactly in float32 (so that percentile
thresholds tie identically): m(y, x) = x(223 − x)·y(223 − y) / (223⁴/16), a smooth bump in [0, 1] (numerator and denominator rounded to float32 first). ROAD's noise: pytorch-grad-cam
draws torch.randn_like; here it is replaced by gradcam's seeded stream "road" (src/models/weights.rs standard_normal,
element c·n + k for channel c of the k-th removed pixel), so that both sides add the same noise.
Output: fixtures/metrics/resnet18_chelsea.npy = [drop, increase, morf_10 … morf_90, lerf_10 … lerf_90] (float32).
"""

import os
import sys

import numpy as np
import torch
import torchvision
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_attribution_fixtures import standard_normal  # noqa: E402
from make_model_fixtures import ROOT, synthetic  # noqa: E402

PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


def bump(h, w):
    y = np.arange(h, dtype=np.int64)[:, None]
    x = np.arange(w, dtype=np.int64)[None, :]
    num = (x * (w - 1 - x) * y * (h - 1 - y)).astype(np.float32)
    return num / np.float32(((w - 1) ** 2) * ((h - 1) ** 2) / 16)


def main():
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(os.path.join(ROOT, "models", "inputs", "chelsea.npy")))
    model = synthetic(torchvision.models.resnet18()).eval()
    cls = int(model(x)[0].argmax())
    targets = [ClassifierOutputTarget(cls)]
    cams = bump(224, 224)[None]
    values = [float(DropInConfidence()(x, cams, targets, model)[0]), float(IncreaseInConfidence()(x, cams, targets, model)[0])]

    def seeded_randn_like(t, *args, **kwargs):
        return torch.from_numpy(standard_normal("road", t.numel()).reshape(tuple(t.shape))).to(t.dtype)

    original = torch.randn_like
    torch.randn_like = seeded_randn_like
    try:
        for metric in [ROADMostRelevantFirst, ROADLeastRelevantFirst]:
            for p in PERCENTILES:
                values.append(float(metric(percentile=p)(x, cams, targets, model)[0]))
    finally:
        torch.randn_like = original
    d = os.path.join(ROOT, "metrics")
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "resnet18_chelsea.npy"), np.float32(values))
    print("class", cls, values)


if __name__ == "__main__":
    main()
