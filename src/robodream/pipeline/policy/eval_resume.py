"""Finished episodes of an evaluation kept on disk, so that an interrupted `robodream eval` resumes where it stopped.

An evaluation of a planner in imagination, or a rank experiment over many agents, runs for hours on a laptop; a
Ctrl-C, a kill or a session limit must not throw the finished episodes away. Each finished episode is written to
<out>/episodes.partial/ (one pickle per agent and seed, written atomically) as soon as it comes back; a re-run of
the same command with the same config, agents and models loads them and runs only the missing seeds. The folder
carries the fingerprint of what is evaluated: any change (config keys that change results, a retrained
checkpoint or world model) discards the kept episodes instead of mixing two evaluations. When every agent has
finished, eval_info.json is written and the folder is removed.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

from robodream.hashing import sha256_json
from robodream.pipeline.policy.harness import EpisodeResult

PARTIAL = "episodes.partial"
_META = "meta.json"


def evaluation_fingerprint(config: dict, models: list[str]) -> str:
    """What an evaluation's episodes depend on: its result-changing config (`stages.hashed`) and the content of
    every model it loads (policy checkpoints, world model, probe): the exported model directory a path names, not
    the rest of its run (Lightning checkpoints, logs, the fidelity record), which a kept episode does not depend on."""
    from robodream.pipeline.stages import fingerprint
    from robodream.pretrained import resolve_model_dir

    return sha256_json({"config": config, "models": {m: fingerprint(resolve_model_dir(m)) for m in models}})


class FinishedEpisodes:
    """The episodes an evaluation in `out` has finished so far, keyed by (agent index, episode index)."""

    def __init__(self, out: Path, fingerprint: str):
        self.folder = Path(out) / PARTIAL
        self.fingerprint = fingerprint
        self.earlier_s: dict[int, float] = {}  # evaluation seconds spent on each agent by earlier sittings
        self._seconds: dict[int, float] = {}  # the same, this sitting included

    def load(self) -> dict[tuple[int, int], EpisodeResult]:
        """The kept episodes of an earlier sitting of this same evaluation; none (and the folder cleared, with a
        note) when what is evaluated changed since."""
        meta_path = self.folder / _META
        if not meta_path.exists():
            self.clear()  # at most one episode written before its first meta: not attributable, dropped
            return {}
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") != self.fingerprint:
            print(f"note: discarding the kept episodes in {self.folder}: the config or a model changed since they "
                  "were evaluated", file=sys.stderr)
            self.clear()
            return {}
        self.earlier_s = {int(k): float(v) for k, v in meta.get("seconds", {}).items()}
        self._seconds = dict(self.earlier_s)
        kept = {}
        for path in sorted(self.folder.glob("agent*_episode*.pkl")):
            agent_ix, episode_ix = (int(part) for part in path.stem.replace("agent", "").split("_episode"))
            with path.open("rb") as f:
                kept[agent_ix, episode_ix] = pickle.load(f)
        return kept

    def agent_seconds(self, agent_ix: int, this_sitting: float) -> float:
        """An agent's evaluation time over all sittings, given this sitting's."""
        return self.earlier_s.get(agent_ix, 0.0) + this_sitting

    def save(self, agent_ix: int, episode_ix: int, result: EpisodeResult, this_sitting: float) -> None:
        """Keep one finished episode; `this_sitting` is the seconds this sitting has spent on its agent."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"agent{agent_ix}_episode{episode_ix}.pkl"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)  # atomic: a kill mid-write leaves no half episode
        self._seconds[agent_ix] = self.agent_seconds(agent_ix, this_sitting)
        meta = {"fingerprint": self.fingerprint, "seconds": self._seconds}
        tmp = self.folder / (_META + ".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(self.folder / _META)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
