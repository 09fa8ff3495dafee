"""Transfer-learning strategies: DTL1 (fine-tuning), DTL2 (frozen features + SVM), fused DTL2, DSIFT baseline.

A strategy is a small object built from `conf/strategy/<name>.yaml` (its ``_target_``), registered with
:func:`facediag.strategies.registry.register_strategy` together with its Predictor class; ``fit(job)`` returns that
Predictor (:mod:`facediag.strategies.predictor`) holding the test predictions, which facediag.training.train saves
and writes like every other run's. Run dirs load back through the same registry (facediag.apply.trained_run).
"""
