"""The benches: measured comparisons printed as tables (``mmcourse bench fusion|joint|regimes|train``).

    fusion   every fusion method vs the single modalities: clean, corrupted, missing; over seeds
    joint    concat, gated and attention fusion trained end to end (encoders too); over seeds
    regimes  known-answer tasks (redundant, unique, synergy, ...): each regime's predicted winner
             measured against every single modality and fusion, over seeds
    train    training throughput of the joint model, pipeline step by pipeline step
"""
