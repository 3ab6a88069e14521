"""The benches: measured comparisons printed as tables (``mmcourse bench fusion|train``).

    fusion   every fusion method vs the single modalities: clean, corrupted, missing; over seeds
    train    training throughput of the joint model, pipeline step by pipeline step
"""
