"""Pipeline: configuration loading, the stages (collect, info, viz, run, ...) and the `robodream` CLI."""
