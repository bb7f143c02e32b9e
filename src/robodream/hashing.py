"""SHA-256 content hashes, computed one way everywhere: stage fingerprints and input hashes (pipeline/stages.py),
the training-data record (pipeline/data/training_data.py) and the model id stamped on synthetic episodes
(pipeline/synthetic/generate.py). Changing how any of these hash invalidates every stamp and record written before, so
the byte layout here is fixed: JSON with sorted keys (anything JSON lacks written as str()), files in 1 MiB blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

BLOCK = 1 << 20


def sha256(*parts: bytes) -> Any:
    """A SHA-256 hash object fed `parts` in order (update it further, or read .hexdigest())."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest


def sha256_json(value: Any) -> str:
    """Hex SHA-256 of `value` as canonical JSON: keys sorted, values JSON lacks (paths, numpy) as str()."""
    return sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def sha256_file(path: str | os.PathLike, digest: Any = None) -> Any:
    """Feed a file's bytes, in blocks, into `digest` (a new SHA-256 when None); returns the hash object."""
    digest = sha256() if digest is None else digest
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest
