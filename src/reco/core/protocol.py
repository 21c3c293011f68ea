"""The sizes every stage agrees on, stated once (as segment-anything states its image size once)
and imported wherever used: configs, settings, help texts and benchmarks format them from here."""

#: The paper's protocol: images resized to this shorter side and centre-cropped square to it
#: (evaluation, ReCo+ training and its checkpoints, the archive images of a concept).
PAPER_SIZE = 320

#: reco's working size: the shorter side at which the segmenter, labelled banks and the dense
#: encoders' preprocessing see a photo (a multiple of DINOv2's 14-pixel patches).
WORKING_SIZE = 448

#: How the paper's protocol segments where it differs from reco's defaults (SegmentSettings):
#: DenseCRF on and float32, as the published code ran (the base layer of eval and ReCo+ configs).
PAPER_SEGMENT = {"crf": True, "amp": False}
