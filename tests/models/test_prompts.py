import torch
import torch.nn.functional as F

import reco
from reco.models.prompts import SCENE_TEMPLATES, prompts_for, text_embeddings


def test_85_templates_in_order():
    prompts = prompts_for("quokka")
    assert len(prompts) == 85 and len(set(prompts)) == 85
    assert prompts[0] == "a bad photo of a quokka."
    assert prompts[-5:] == [t.format("quokka") for t in SCENE_TEMPLATES]
    assert prompts[-1] == "this is one quokka in the scene."


def test_text_embedding_is_the_normalised_mean_of_normalised_prompts():
    clip = reco.create_model("tiny-clip")
    got = text_embeddings(clip, ["sky", "parking lot"], batch_size=7)
    for row, concept in zip(got, ["sky", "parking lot"]):
        with torch.no_grad():
            each = torch.stack([F.normalize(clip.encode_text([p])[0], dim=0) for p in prompts_for(concept)])
        expected = each.mean(0) / each.mean(0).norm()
        torch.testing.assert_close(row, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(got.norm(dim=1), torch.ones(2))
