"""A local web page for the people who look at the faces: `python -m facediag.app run=<run dir> [port=<n>]`.

:mod:`facediag.app.service` serves one run photo by photo (the model loaded once, a lock, limits on uploads),
:mod:`facediag.app.model_card` writes a run's model card, :mod:`facediag.app.ui` is the Gradio page. Gradio is an
optional extra: ``pip install "facediag[app]"``. Research tool, not a diagnosis.
"""
