"""Transfer-learning strategies: DTL1 (fine-tuning), DTL2 (frozen features + SVM), DSIFT baseline.

Each strategy is a small object built from `conf/strategy/<name>.yaml` whose ``run(job)`` returns the
predictions frame (see facediag.scoring.results); facediag.training.train writes every result the same way.
"""
