"""Where a world-model planner's imagination departs from PyBullet: the probe's cube (and end effector) read on
the frame the model imagined for each executed action against the frame PyBullet produced, from the
`*_sim_vs_imagined.mp4` videos of `robodream experiment plan` (left half PyBullet, right half imagined, both
upscaled: they are scaled back to the probe's input size).

    python benchmarks/plan_cube_gap.py runs/plan_probe 'runs/experiments/plan/world_model/*sim_vs_imagined.mp4'
"""

from __future__ import annotations

import argparse
import glob

import cv2
import numpy as np

from robodream.world_models.probe import StateSuccessProbe


def read_halves(path: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(real, imagined) frames of one side-by-side video, each (T, size, size, 3) uint8 RGB."""
    capture, frames = cv2.VideoCapture(path), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    video = np.stack(frames)
    width = video.shape[2] // 2

    def shrink(part: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in part])

    return shrink(video[:, :, :width]), shrink(video[:, :, width:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", help="the probe directory the planner used")
    parser.add_argument("videos", help="glob of *_sim_vs_imagined.mp4 files")
    args = parser.parse_args()
    probe = StateSuccessProbe.from_pretrained(args.probe)
    for path in sorted(glob.glob(args.videos)):
        real, imagined = (probe.predict(x) for x in read_halves(path, probe.config.image_size))
        cube = np.linalg.norm(real["cube"][:, :2] - imagined["cube"][:, :2], axis=1) * 100
        ee = np.linalg.norm(real["ee"][:, :2] - imagined["ee"][:, :2], axis=1) * 100
        moved = np.linalg.norm(real["cube"][-1, :2] - real["cube"][0, :2]) * 100
        print(f"{path.split('/')[-1]:<45} {len(cube):>3} steps  cube real vs imagined {cube.mean():.1f} cm mean, "
              f"{cube.max():.1f} max; end effector {ee.mean():.1f} cm; real cube moved {moved:.1f} cm")


if __name__ == "__main__":
    main()
