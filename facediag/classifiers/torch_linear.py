"""A fitted linear SVM as a torch layer on top of a backbone's features: DTL2's class scores as one module
(Grad-CAM back-propagates the SVM's decision value to the convolution maps)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def svm_as_linear(estimator: Any, n_classes: int) -> nn.Linear:
    """A fitted linear SVM (optionally ``Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="linear"))])``)
    as one ``Linear(D, n_classes)``.

    Binary: exactly ``facediag.classifiers.svm.decision_scores`` ([-d, d]). Multiclass: per class the summed one-vs-one
    decision values (the confidences sklearn breaks vote ties with); the votes themselves are not
    differentiable, so Grad-CAM explains this linear score.
    """
    from facediag.classifiers.linear_svm import LinearSVM, linear_arrays

    arrays = vars(estimator) if isinstance(estimator, LinearSVM) else linear_arrays(estimator)
    coef, intercept = arrays["coef"], arrays["intercept"]
    if coef.shape[0] == 1:
        weight, bias = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
    else:
        weight, bias = np.zeros((n_classes, coef.shape[1])), np.zeros(n_classes)
        pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]  # sklearn's one-vs-one order
        for k, (i, j) in enumerate(pairs):
            weight[i] += coef[k]
            weight[j] -= coef[k]
            bias[i] += intercept[k]
            bias[j] -= intercept[k]
    # fold the standardisation: w·(x - m)/s + b = (w/s)·x + (b - (w/s)·m)
    weight = weight / arrays["scale"]
    bias = bias - weight @ arrays["mean"]
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight).float())
        linear.bias.copy_(torch.from_numpy(bias).float())
    return linear


class FeaturesThenLinear(nn.Module):
    """Normalised images → backbone features (DTL2's feature layer) → a linear layer (the SVM)."""

    def __init__(self, backbone: nn.Module, linear: nn.Linear):
        super().__init__()
        self.backbone, self.linear = backbone, linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.backbone.features(x))
