"""Writes pytorch-grad-cam 1.5.7 reference maps for tests/cam_parity.rs.

Dev-only. Needs torch, torchvision, numpy, grad-cam==1.5.7 (and what make_model_fixtures.py needs).

    python tools/make_cam_fixtures.py

Cases: the bundled EfficientNet-Lite0 (layers `head_act` = the head's ReLU6 and `_bn1` = the batch-norm before it)
and the synthetic-weight
resnet18 (layers `layer4` and `layer3`), both on fixtures/models/inputs/chelsea.npy, class = top-1. For every
method (GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM, GradCAMElementWise, EigenCAM, EigenGradCAM, FEM,
RandomCAM) and layer: raw.npy (the map before ReLU, as
`get_cam_image` returns it) and cam.npy (the final 224×224 map); plus both layers together for GradCAM. For resnet18
also guided backpropagation (GuidedBackpropReLUModel) in float32 and float64.
Output: fixtures/cam/<model>/<method>_<layer>_{raw,cam}.npy.

EigenCAM and EigenGradCAM: a singular vector's sign is arbitrary, so pytorch-grad-cam's map may come out inverted.
gradcam fixes it (the map correlates positively with the activations' channel sum); the references apply the same
rule to pytorch-grad-cam's projection before its ReLU and scaling, so the final maps compare like for like.
eigen_smooth (GradCAM and LayerCAM on the first layer: *_eigensmooth_raw.npy) gets the same sign rule; aug_smooth:
GradCAM on the bundled model's first layer (gradcam_head_act_augsmooth_cam.npy). The softmax probability as the
target (ClassifierOutputSoftmaxTarget): GradCAM's raw map on the first layer (*_prob_raw.npy). FinerCAM (its
default target: the top-1 class against the three nearest by logit, alpha 1): raw maps (finercam_*_raw.npy).
RandomCAM: gradcam's weights are seeded (uniform in [−1, 1) from the synthetic-weight generator, stream
"randomcam"); the reference gives pytorch-grad-cam's RandomCAM those weights instead of numpy's random draw.
"""

import copy
import os
import sys

import numpy as np
import torch
import torchvision
from pytorch_grad_cam import (
    FEM,
    EigenCAM,
    EigenGradCAM,
    FinerCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    GuidedBackpropReLUModel,
    HiResCAM,
    LayerCAM,
    RandomCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import ROOT, efficientnet_lite0, synthetic, unit  # noqa: E402

METHODS = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "gradcam-elementwise": GradCAMElementWise,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
    "fem": FEM,
    "randomcam": RandomCAM,
}
EIGEN = {"eigencam", "eigengradcam"}
NEWER = {"gradcam-elementwise", "eigencam", "eigengradcam", "fem", "randomcam"}
RAW_ONLY = {"fem", "randomcam"}  # weighted sums like GradCAM: the shared post-processing is checked on the others


def save(model_name, name, array):
    d = os.path.join(ROOT, "cam", model_name)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, name + ".npy"), np.ascontiguousarray(np.asarray(array, dtype=np.float32)))


def record_raw_maps(cam, signed):
    """Wraps cam.get_cam_image to keep each raw map (before ReLU) in the returned list. Where signed(args) is true the
    map first gets gradcam's sign: positive correlation with the activations' channel sum (get_cam_image's 4th
    argument is the layer's activations, [N, C, H, W])."""
    raws = []
    original = cam.get_cam_image

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        if signed(args):
            total = np.nan_to_num(np.asarray(args[3], dtype=np.float64)).sum(axis=1)
            for b in range(out.shape[0]):
                if float((out[b].astype(np.float64) * total[b]).sum()) < 0:
                    out[b] = -out[b]
        raws.append(out.copy())
        return out

    cam.get_cam_image = recording
    return raws


def run(model_name, model, layers, x):
    cls = int(model(x)[0].argmax())
    print(model_name, "class", cls)
    for method, cam_class in METHODS.items():
        for layer_name, module in layers.items():
            cam = cam_class(model=model, target_layers=[module])
            if method == "randomcam":
                # gradcam's RandomCAM is seeded: channel k weighs 2·u_k − 1 of the synthetic-weight stream "randomcam".
                def seeded(input_tensor, target_layer, target_category, activations, grads):
                    c = grads.shape[1]
                    w = (2.0 * unit("randomcam", c).astype(np.float64) - 1.0).astype(np.float32)
                    return np.tile(w, (grads.shape[0], 1))

                cam.get_cam_weights = seeded
            # Eigen-CAM, Eigen-Grad-CAM and eigen_smooth (get_cam_image's 6th argument) get gradcam's sign.
            raws = record_raw_maps(cam, lambda args, method=method: method in EIGEN or args[5])
            final = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
            save(model_name, f"{method}_{layer_name}_raw", raws[0][0])
            # The newer methods' final maps only for the first layer (tests/cam_parity.rs; fixtures/ near 30 MB).
            if method not in RAW_ONLY and (method not in NEWER or layer_name == next(iter(layers))):
                save(model_name, f"{method}_{layer_name}_cam", final[0])
    # FinerCAM (base GradCAM): its own target against the three nearest classes; targets=None makes it pick the
    # top-1 class and build that target. Raw maps on both layers (its post-processing is GradCAM's).
    for layer_name, module in layers.items():
        finer = FinerCAM(model=model, target_layers=[module])
        raws = record_raw_maps(finer.base_cam, lambda args: False)
        finer(input_tensor=x, targets=None)
        save(model_name, f"finercam_{layer_name}_raw", raws[0][0])
    # eigen_smooth on the first layer, for a weighted-sum method and an element-wise one (signed like Eigen-CAM).
    layer_name, module = next(iter(layers.items()))
    for method in ["gradcam", "layercam"]:
        cam = METHODS[method](model=model, target_layers=[module])
        raws = record_raw_maps(cam, lambda args: True)
        final = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)], eigen_smooth=True)
        save(model_name, f"{method}_{layer_name}_eigensmooth_raw", raws[0][0])
    # The softmax probability as the target (ClassifierOutputSoftmaxTarget): Grad-CAM's raw map on the first layer.
    cam = GradCAM(model=model, target_layers=[module])
    raws = record_raw_maps(cam, lambda args: False)
    cam(input_tensor=x, targets=[ClassifierOutputSoftmaxTarget(cls)])
    save(model_name, f"gradcam_{layer_name}_prob_raw", raws[0][0])
    # aug_smooth: a final-map operation (six augmented inputs, maps flipped back and averaged), Grad-CAM on the
    # bundled model's first layer (one 224×224 map: fixtures/ stays under 30 MB).
    if model_name == "efficientnet_lite0":
        final = GradCAM(model=model, target_layers=[module])(
            input_tensor=x, targets=[ClassifierOutputTarget(cls)], aug_smooth=True
        )
        save(model_name, f"gradcam_{layer_name}_augsmooth_cam", final[0])
    both = GradCAM(model=model, target_layers=list(layers.values()))(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
    save(model_name, "gradcam_" + "+".join(layers) + "_cam", both[0])
    return cls


class LiteWithHeadActivation(torch.nn.Module):
    """EfficientNet-Lite whose head ReLU6 is a module of its own (`head_act`), so that hooks can target it: the
    original shares one `_swish` module between all layers. Computes exactly the same function."""

    def __init__(self, lite):
        super().__init__()
        self.lite = lite
        self.head_act = torch.nn.ReLU6()

    def forward(self, x):
        m = self.lite
        x = m._swish(m._bn0(m._conv_stem(x)))
        for block in m._blocks:
            x = block(x)
        x = self.head_act(m._bn1(m._conv_head(x)))
        return m._fc(m._dropout(m._avg_pooling(x).flatten(1)))


def main():
    x = torch.from_numpy(np.load(os.path.join(ROOT, "models", "inputs", "chelsea.npy")))
    lite = LiteWithHeadActivation(efficientnet_lite0()).eval()
    run("efficientnet_lite0", lite, {"head_act": lite.head_act, "_bn1": lite.lite._bn1}, x)

    r18 = synthetic(torchvision.models.resnet18())
    cls = run("resnet18", r18, {"layer4": r18.layer4, "layer3": r18.layer3}, x)
    # GuidedBackpropReLUModel returns H×W×C.
    gb32 = GuidedBackpropReLUModel(model=copy.deepcopy(r18), device="cpu")(x.clone(), target_category=cls)
    gb64 = GuidedBackpropReLUModel(model=copy.deepcopy(r18).double(), device="cpu")(x.double().clone(), target_category=cls)
    # Every 11th value of the flattened C×H×W image (fixtures/ stays near 30 MB).
    save("resnet18", "guided_backprop_f32", np.transpose(gb32, (2, 0, 1)).ravel()[::11])
    save("resnet18", "guided_backprop_f64", np.transpose(gb64, (2, 0, 1)).ravel()[::11])


if __name__ == "__main__":
    main()
