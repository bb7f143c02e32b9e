"""Policy configuration: one typed dataclass, `type` picks the implementation ("diffusion" or "bc").

No torch, no Lightning: configs are read by the CLI, saved as YAML next to runs and as JSON inside
checkpoints (`config.json`), and validated here with messages that say what to change.

Time layout (Chi et al. 2023, "Diffusion Policy", §3.1 and Fig. 3): the policy sees the last `n_obs_steps`
observations o_{t-To+1..t} and predicts `horizon` actions a_{t-To+1 .. t-To+horizon}; the robot executes the
`n_action_steps` of them that start at the current step t (receding horizon), then re-plans. How many to
predict and execute is a property of the task as much as of the policy: push_cube is a feedback task (the cube
drifts, so re-planning every step wins), pick_place needs commitment over several steps (a single-step policy
stalls at the expert's phase switches). `horizon` and `n_action_steps` left null take the layout measured for
the policy type and the data's task (`TASK_LAYOUTS`); training fixes them (`for_task`) and the checkpoint
records the resolved values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from robodream.errors import RobodreamError

POLICY_TYPES = ("diffusion", "bc")
#: a policy checkpoint's config.json: {"format", "version", "type", "policy": PolicyConfig, "features",
#: "normalizer", "num_parameters", "training"} (written by policies/base.py, read by policies/pretrained.py)
CHECKPOINT_FORMAT = "robodream.policy"
CHECKPOINT_VERSION = 1
NORM_MODES = ("min_max", "mean_std", "identity")

#: (horizon, n_action_steps) per policy type and task, for configs that leave them null; measured on validation
#: seeds (docs/benchmarks.md, "Policies"). The horizon grows to n_obs_steps - 1 + n_action_steps when needed.
TASK_LAYOUTS: dict[str, dict[str, tuple[int, int]]] = {
    "bc": {"push_cube": (1, 1), "pick_place": (16, 8)},
    "diffusion": {"push_cube": (16, 1), "pick_place": (16, 8)},
}
#: Diffusion Policy's layout (Chi et al.), for tasks without a measured one (imported recordings)
OTHER_TASKS_LAYOUT = (16, 8)


@dataclass
class EncoderConfig:
    """The image encoder: a small ResNet trained from scratch, GroupNorm, spatial-softmax keypoints.

    Chi et al. replace ResNet-18's BatchNorm with GroupNorm and its global pooling with a spatial softmax
    (robomimic's keypoint head); this is the same recipe scaled to 64x64 CPU training.
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 64])  # one residual stage each, stride 2
    blocks_per_stage: int = 1
    num_keypoints: int = 32  # spatial-softmax keypoints (2 coordinates each)
    feature_dim: int = 64  # per camera and time step
    num_groups: int = 8  # GroupNorm groups (must divide every channel count)
    random_shift: int = 4  # training augmentation: pad by N pixels and crop back at a random offset (DrQ)

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 for c in self.channels):
            raise RobodreamError(f"policy.encoder.channels={self.channels}: give one positive width per stage")
        bad = [c for c in self.channels if c % self.num_groups]
        if bad:
            raise RobodreamError(f"policy.encoder.num_groups={self.num_groups} does not divide channels {bad}")
        if self.num_keypoints < 1 or self.feature_dim < 1 or self.blocks_per_stage < 1:
            raise RobodreamError("policy.encoder: num_keypoints, feature_dim and blocks_per_stage must be >= 1")
        if self.random_shift < 0:
            raise RobodreamError(f"policy.encoder.random_shift={self.random_shift}: use 0 (off) or a pixel count")


@dataclass
class DiffusionConfig:
    """The denoiser (a 1-D temporal U-Net with FiLM conditioning) and its noise schedule."""

    down_dims: list[int] = field(default_factory=lambda: [64, 128, 256])  # Chi: [256, 512, 1024]
    kernel_size: int = 5
    num_groups: int = 8
    step_embed_dim: int = 64  # sinusoidal diffusion-step embedding
    num_train_timesteps: int = 100  # DDPM steps in training (Chi et al.)
    num_inference_steps: int = 10  # DDIM steps when acting
    scheduler: str = "ddim"  # inference sampler: ddim | ddpm
    beta_schedule: str = "squaredcos_cap_v2"  # the cosine schedule of Nichol & Dhariwal 2021, as Chi et al.
    prediction_type: str = "epsilon"  # epsilon | sample
    clip_sample: bool = True  # actions are normalised to [-1, 1]

    def __post_init__(self) -> None:
        if self.scheduler not in ("ddim", "ddpm"):
            raise RobodreamError(f"policy.diffusion.scheduler={self.scheduler!r}: choose ddim or ddpm")
        if self.prediction_type not in ("epsilon", "sample"):
            raise RobodreamError(f"policy.diffusion.prediction_type={self.prediction_type!r}: "
                                 "choose epsilon or sample")
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise RobodreamError(f"policy.diffusion.num_inference_steps={self.num_inference_steps}: choose 1.."
                                 f"{self.num_train_timesteps} (num_train_timesteps)")
        bad = [d for d in self.down_dims if d % self.num_groups]
        if not self.down_dims or bad:
            raise RobodreamError(f"policy.diffusion.down_dims={self.down_dims}: give widths divisible by "
                                 f"num_groups={self.num_groups}")


@dataclass
class BCConfig:
    """The behaviour-cloning baseline's regression head (an MLP over the same observation features)."""

    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    loss: str = "l1"  # l1 (as ACT, Zhao et al. 2023) or mse
    layer_norm: bool = True  # LayerNorm after each hidden layer (checkpoints saved before it existed: false)

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "mse"):
            raise RobodreamError(f"policy.bc.loss={self.loss!r}: choose l1 or mse")


@dataclass
class PolicyConfig:
    """A manipulation policy: observation window (images + state) -> action chunk.

    The defaults are robodream's default policy (configs/policy/default.yaml; docs/benchmarks.md, "Policies"): the
    front camera through the spatial-softmax encoder, with observation.state, one observation, z-scored inputs and
    targets, an MLP head regressing the action chunk (L1), and the per-task time layout.
    """

    type: str = "bc"  # bc (regression head) | diffusion
    n_obs_steps: int = 1  # To: observations the policy sees
    horizon: int | None = None  # Tp: actions predicted per call (null: TASK_LAYOUTS for the data's task)
    n_action_steps: int | None = None  # Ta: actions executed before re-planning (null: as horizon)
    # Cameras to use (null = every observation.images.* of the data). observation.environment_state is never
    # used: it is privileged simulator state that a real robot does not have.
    image_keys: list[str] | None = None
    use_state: bool = True  # observation.state (end effector, gripper, joints)
    normalization: dict[str, str] = field(default_factory=lambda: {
        "images": "mean_std", "observation.state": "mean_std", "action": "mean_std"})
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    bc: BCConfig = field(default_factory=BCConfig)

    def __post_init__(self) -> None:
        if self.type not in POLICY_TYPES:
            raise RobodreamError(f"unknown policy type '{self.type}': choose one of {', '.join(POLICY_TYPES)}")
        if self.n_obs_steps < 1 or any(v is not None and v < 1 for v in (self.horizon, self.n_action_steps)):
            raise RobodreamError("policy n_obs_steps, horizon and n_action_steps must all be >= 1")
        for key, mode in self.normalization.items():
            if mode not in NORM_MODES:
                raise RobodreamError(f"policy.normalization.{key}={mode!r}: choose one of {', '.join(NORM_MODES)}")
        if self.image_keys is not None and any(not k.startswith("observation.images.") for k in self.image_keys):
            raise RobodreamError(f"policy.image_keys={self.image_keys}: camera keys look like "
                                 "observation.images.<camera>")
        if self.image_keys is not None and not self.image_keys and not self.use_state:
            raise RobodreamError("the policy has no inputs: give image_keys or set use_state=true")
        if self.type == "diffusion" and self.diffusion.clip_sample and self.normalization.get("action") != "min_max":
            raise RobodreamError("a diffusion policy with clip_sample needs policy.normalization.action=min_max (its "
                                 "samples are clipped to [-1, 1]); start from configs/policy/diffusion.yaml")
        if self.horizon is not None:
            self._check_layout()

    def _check_layout(self) -> None:
        if self.type == "diffusion":
            levels = len(self.diffusion.down_dims) - 1
            if self.horizon % (2**levels):
                raise RobodreamError(f"policy horizon={self.horizon} must be divisible by {2**levels}: the U-Net "
                                     f"halves it {levels} times (policy.diffusion.down_dims has {levels + 1} levels)")
        if self.n_action_steps is None:
            return
        if self.n_action_steps > self.horizon:
            raise RobodreamError(f"policy n_action_steps={self.n_action_steps} > horizon={self.horizon}: a policy "
                                 "cannot execute more actions than it predicts; lower n_action_steps or raise horizon")
        last = self.n_obs_steps - 1 + self.n_action_steps
        if last > self.horizon:
            raise RobodreamError(
                f"policy n_obs_steps={self.n_obs_steps} + n_action_steps={self.n_action_steps} - 1 > "
                f"horizon={self.horizon}: the executed actions start at the current step (index n_obs_steps - 1 "
                f"of the chunk); use horizon >= {last} or fewer action steps")

    @property
    def resolved(self) -> bool:
        """Whether the time layout is fixed (a checkpoint's config always is)."""
        return self.horizon is not None and self.n_action_steps is not None

    def for_task(self, task: str | None) -> PolicyConfig:
        """This config with its null horizon / n_action_steps taken from `TASK_LAYOUTS` for `task` (the layout
        of a policy trained on that task's data); values the config sets are kept."""
        horizon, n_action_steps = TASK_LAYOUTS[self.type].get(task or "", OTHER_TASKS_LAYOUT)
        if self.n_action_steps is not None:
            n_action_steps = self.n_action_steps
        elif self.horizon is not None:  # as many as the given horizon allows
            n_action_steps = max(1, min(n_action_steps, self.horizon - self.n_obs_steps + 1))
        if self.horizon is None:
            horizon = max(horizon, self.n_obs_steps - 1 + n_action_steps)
            if self.type == "diffusion":  # the U-Net halves the horizon once per level
                step = 2 ** (len(self.diffusion.down_dims) - 1)
                horizon = -(-horizon // step) * step
        else:
            horizon = self.horizon
        return replace(self, horizon=horizon, n_action_steps=n_action_steps)  # replace() re-runs the checks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        """Rebuild from `to_dict()` output (e.g. a checkpoint's config.json)."""
        data = dict(data)
        data["encoder"] = EncoderConfig(**data.get("encoder", {}))
        data["diffusion"] = DiffusionConfig(**data.get("diffusion", {}))
        data["bc"] = BCConfig(**{"layer_norm": False, **data.get("bc", {})})  # saved before layer_norm existed
        return cls(**data)

    # -- the time layout (see the module docstring; a resolved config's) ------------------------------------
    def observation_offsets(self) -> list[int]:
        """Frame offsets of the observation window, relative to the current step."""
        return list(range(1 - self.n_obs_steps, 1))

    def action_offsets(self) -> list[int]:
        """Frame offsets of the predicted action chunk, relative to the current step."""
        return list(range(1 - self.n_obs_steps, 1 - self.n_obs_steps + self.horizon))

    @property
    def first_executed(self) -> int:
        """Index in the chunk of the action for the current step."""
        return self.n_obs_steps - 1


def check_checkpoint_info(info: dict[str, Any], directory: Any) -> dict[str, Any]:
    """Refuse a config.json that is not a policy checkpoint this robodream can read; returns it."""
    if info.get("format") != CHECKPOINT_FORMAT:
        raise RobodreamError(f"{directory} is not a robodream policy checkpoint (format {info.get('format')!r})")
    if info.get("version", 0) > CHECKPOINT_VERSION:
        raise RobodreamError(f"{directory} was written by a newer robodream (checkpoint version "
                             f"{info['version']} > {CHECKPOINT_VERSION}); upgrade robodream")
    if info.get("type") not in POLICY_TYPES:
        raise RobodreamError(f"{directory} holds a policy of type {info.get('type')!r}; this robodream knows "
                             f"{list(POLICY_TYPES)}")
    return info
