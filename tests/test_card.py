"""The model card's text (training/card.py): a card is shipped with its model, so it says where the data came from
in terms a reader can use and never shows paths of the machine it was made on."""

import re
from pathlib import Path

from facegen import model_folder
from training import card

REPO = Path(__file__).resolve().parents[1]
# An absolute path: a '/' that starts a word (not one inside a URL or a relative path) followed by a name and '/'.
# A path from a machine's root; the service's own URL paths (/api/...) are not places on a disk.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/<~-])/(?!api/)[\w.-]+/")


def _manifest(dataset: dict, metrics: dict) -> dict:
    return model_folder.build_manifest(name="m", resolution=32, latent_size=8, attributes=["Male"],
                                       architecture="facegen", parameters=1, created="x", dataset=dataset,
                                       metrics=metrics)


def test_a_card_names_the_data_and_the_commands_files_without_the_build_machines_paths():
    dataset = {"name": "celeba-hq-128", "source": "/home/builder/data/celeba-hq-128", "layout": "celebamask-hq",
               "cache": "/home/builder/cache/celeba-hq-64.npz", "images": 10, "licence": "research only"}
    metrics = {"command": "python -m training evaluate --model models/m --data /home/builder/cache/celeba-hq-64.npz "
                          "--json=/tmp/notes/m.json --classifier ~/c.keras --samples 20", "date": "d"}
    text = card.render_card(_manifest(dataset, metrics), [])
    assert "/home/builder" not in text and "/tmp/" not in text and "~/" not in text
    assert not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.search(text)
    assert "| source | `<celeba-hq-128>` (celebamask-hq layout) |" in text
    assert ("`python -m training evaluate --model models/m --data <celeba-hq-64.npz> --json=<m.json> "
            "--classifier <c.keras> --samples 20`") in text


def test_paths_inside_the_repository_stay_as_relative_paths():
    assert card.portable_path(REPO / "data" / "synth") == "data/synth"
    assert card.portable_path("data/synth") == "data/synth"
    assert card.portable_path("../elsewhere/faces") == "<faces>"  # leaves the repository: a placeholder
    dataset = {"name": "synth", "source": str(REPO / "data" / "synth"), "layout": "official", "synthetic": True}
    assert "| source | `data/synth` (official layout) |" in card.render_card(_manifest(dataset, {}), [])


def test_the_shipped_cards_show_no_absolute_path():
    cards = sorted((REPO / "models").glob(f"*/{model_folder.CARD}"))
    assert cards
    for path in cards:
        found = ABSOLUTE_PATH.search(path.read_text())
        assert found is None, f"{path.relative_to(REPO)}: {found.group()!r}"


def test_a_model_with_an_upsampling_stage_says_so_beside_its_bases_training():
    manifest = _manifest({"name": "d"}, {})
    manifest["training"] = {"steps": 100, "config": {"loss": "nonsaturating"},
                            "upsampler": {"steps": 3200, "cpu_seconds": 5400, "base": "celeba-hq-64",
                                          "loss": "mean absolute error against the 128 px photos",
                                          "config": {"batch_size": 32, "blocks": 4, "width": 32, "small": 64,
                                                     "adversarial": 0.02}}}
    text = card.render_card(manifest, [])
    assert ("| upsampling stage | 3,200 steps of batch 32, 1.50 CPU hours, behind celeba-hq-64's generator (the rows "
            "above are its training) |") in text
    assert "4 residual blocks of 32 channels at 64 px" in text and "plus 0.02 x a patch critic's loss" in text
    manifest["training"]["upsampler"]["config"]["adversarial"] = 0
    assert "critic" not in card.render_card(manifest, [])
    del manifest["training"]["upsampler"]
    assert "upsampling stage" not in card.render_card(manifest, [])
