"""Collect, inspect, merge and record episodes: the stores everything else reads."""
