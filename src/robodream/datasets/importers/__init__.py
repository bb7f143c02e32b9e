"""Getting recordings made elsewhere into episode stores, and stores out to other formats.

- `rosbag`: ROS 1 .bag, ROS 2 sqlite3 and MCAP bags (through `rosbags`, no ROS install), with a YAML mapping
  of topics to features, resampled to the store's fps on a common clock (`resample`, `ros_messages`).
- `lerobot` / `lerobot_export`: LeRobot v3.0 datasets (parquet + MP4), read and written with pyarrow + PyAV.
- `replay_buffer`: Diffusion Policy zarr v2 replay buffers (data/<key>, meta/episode_ends).

Every import writes a temporary store next to the target and moves it into place only when the whole
import succeeded (`outputs.atomic_output`), so a bad file never leaves a half-written store behind.
"""
