"""Course tooling: benchmarks and other commands behind the ``mmcourse`` CLI."""
