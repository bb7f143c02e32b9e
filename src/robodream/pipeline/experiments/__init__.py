"""Experiments built from the pipeline's stages: `robodream experiment augment` and `robodream experiment rank`.

Each experiment is a list of `Stage`s (pipeline/stages.py) with one output directory per sub-step, so an
interrupted experiment resumes by skipping the sub-steps whose config and inputs are unchanged.
"""
