"""Behaviour-cloning baseline: the diffusion policy's observation encoder with a regression head.

The same image encoder, observation window and receding-horizon action chunk as the diffusion policy
(so the comparison isolates the action head), regressed directly: an MLP maps the observation features to
the `horizon` x A normalised actions, trained with L1 (as ACT, Zhao et al. 2023) or MSE. It cannot represent
multimodal demonstrations (it averages them), which is the failure mode Chi et al. use to motivate diffusion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robodream.features import Feature
from robodream.policies.base import Policy
from robodream.policies.configuration import PolicyConfig


class BCPolicy(Policy):
    """Observation window -> action chunk by regression."""

    policy_type = "bc"

    def __init__(self, config: PolicyConfig, features: Mapping[str, Feature],
                 stats: Mapping[str, Any] | None = None):
        super().__init__(config, features, stats)
        layers: list[nn.Module] = []
        width = self.cond_dim
        for hidden in config.bc.hidden_dims:
            layers += [nn.Linear(width, hidden), *([nn.LayerNorm(hidden)] if config.bc.layer_norm else []), nn.Mish()]
            width = hidden
        layers.append(nn.Linear(width, config.horizon * self.action_dim))
        self.head = nn.Sequential(*layers)

    def sample_actions(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.head(cond).reshape(cond.shape[0], self.config.horizon, self.action_dim)

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        predicted = self.sample_actions(self.encode_observations(batch, augment=True))
        target = self.normalized_actions(batch)
        return F.l1_loss(predicted, target) if self.config.bc.loss == "l1" else F.mse_loss(predicted, target)
