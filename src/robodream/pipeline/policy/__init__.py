"""Train policies, evaluate them in PyBullet or in imagination."""
