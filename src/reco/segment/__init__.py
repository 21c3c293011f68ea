"""Segmenting images: ReCo's :class:`~reco.segment.segmenter.Segmenter` (a concept bank),
ReCo+'s trained segmenter, :func:`~reco.segment.load.load_predictor` for either, the
batched engine, DenseCRF, and writing outputs without replacing files reco did not write."""
