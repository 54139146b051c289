"""The iGSM "world": domains whose entity categories form a four-layer hierarchy.

Physics of Language Models 2.1 (iGSM) draws each problem's structure from a
fixed hierarchy of categories (e.g. District -> School -> Classroom ->
Backpack); an *instance parameter* is "the number of each X's Y" for an item
X of layer i and an item Y of layer i+1.  The MASBench examples use the same
style ("each Compression Backpack's Watercolor Pencil", "How many Stationery
does Molecular Biology Lab have?").

This table is the shared world knowledge: the generator samples from it and
the reference solver reads it to know which layer a name belongs to (the text
never says).  Names carry no apostrophes or periods, so "X's Y" splits on
"'s " unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    name: str
    layers: tuple[Category, Category, Category, Category]


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "school",
        (
            Category(
                "District",
                (
                    "Capitol District",
                    "Harbor District",
                    "Riverside District",
                    "Hillcrest District",
                    "Lakeview District",
                    "Northgate District",
                ),
            ),
            Category(
                "School",
                (
                    "Oak Ridge High",
                    "Maple Elementary",
                    "Cedar Middle School",
                    "Pine Valley Academy",
                    "Willow Prep",
                    "Birch Grammar School",
                ),
            ),
            Category(
                "Classroom",
                (
                    "Chemistry Lab",
                    "Art Studio",
                    "Music Room",
                    "Computer Science Lab",
                    "Molecular Biology Lab",
                    "Reading Room",
                ),
            ),
            Category(
                "Backpack",
                (
                    "Duffle Backpack",
                    "Compression Backpack",
                    "Hiking Backpack",
                    "Laptop Backpack",
                    "Drawstring Backpack",
                    "Messenger Backpack",
                ),
            ),
        ),
    ),
    Domain(
        "zoo",
        (
            Category(
                "Park",
                (
                    "Kruger National Park",
                    "Ngorongoro Conservation Area",
                    "Serengeti Park",
                    "Yellowstone Park",
                    "Kakadu Park",
                    "Banff Park",
                ),
            ),
            Category(
                "Enclosure",
                (
                    "Kelp Forest Tank",
                    "Rockpool Exhibit",
                    "Savanna Enclosure",
                    "Reptile House",
                    "Aviary Dome",
                    "Nocturnal House",
                ),
            ),
            Category("Animal", ("Red Eyed Tree Frog", "Toad", "Gecko", "Fruit Bat", "Meerkat", "Flamingo")),
            Category("Bone", ("Coracoid", "Femur", "Scapula", "Sternum", "Tibia", "Radius")),
        ),
    ),
    Domain(
        "grocery",
        (
            Category(
                "Neighborhood",
                (
                    "Governor District",
                    "Municipal District",
                    "Medical School Campus",
                    "Harbor Quarter",
                    "Old Town",
                    "Market Square",
                ),
            ),
            Category(
                "Supermarket",
                ("Family Dollar", "Dollar General", "Aldi", "Uwajimaya", "Seabra Foods", "Seafood City Supermarket"),
            ),
            Category(
                "Product",
                ("Rice Cakes", "Crackers", "Trail Mix", "Tortilla Chips", "Granola Bars", "Chocolate Covered Pretzels"),
            ),
            Category("Ingredient", ("Celery", "Garlic", "Mushrooms", "Oats", "Sesame", "Paprika")),
        ),
    ),
    Domain(
        "body",
        (
            Category("Organism", ("Euglena", "Rotifer", "Hydra", "Planarian", "Tardigrade", "Amoeba")),
            Category("Organ", ("Patella", "Biceps", "Retina", "Cochlea", "Pancreas", "Spleen")),
            Category("Tissue", ("Epithelium", "Cartilage", "Dermis", "Mucosa", "Stroma", "Periosteum")),
            Category("Cell", ("Melanocytes", "Osteoblasts", "Fibroblasts", "Neurons", "Myocytes", "Adipocytes")),
        ),
    ),
)

NAME_LAYER: dict[str, tuple[str, int]] = {}
"""Item name -> (domain, layer index)."""
CATEGORY_LAYER: dict[str, tuple[str, int]] = {}
"""Category name -> (domain, layer index)."""
CATEGORY_ITEMS: dict[str, tuple[str, ...]] = {}

for _d in DOMAINS:
    for _i, _c in enumerate(_d.layers):
        CATEGORY_LAYER[_c.name] = (_d.name, _i)
        CATEGORY_ITEMS[_c.name] = _c.items
        for _n in _c.items:
            NAME_LAYER[_n] = (_d.name, _i)

_all = [n for d in DOMAINS for c in d.layers for n in (c.name, *c.items)]
assert len(_all) == len(set(_all)), "iGSM world: every category and item name must be unique"
assert not any("'" in n or "." in n for n in _all), "iGSM world: names must not contain ' or ."

MOD = 23
"""All iGSM arithmetic is modulo 23 (the authors' igsm agent blocks say so in every instruction)."""
CONVENTION = (
    "All calculations are done mod 23. Any parameter that wasn't mentioned in the problem statement is by default zero."
)
"""The authors' igsm instruction (MAS-Orchestra ``agents/blocks_harmony/igsm``), spelled correctly."""

NOISE_LINE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
"""The haystack line of the authors' robustness passages (RULER passkey style)."""
KEY_ADJECTIVES = (
    "open",
    "quiet",
    "brave",
    "lucky",
    "silver",
    "hollow",
    "rapid",
    "gentle",
    "crimson",
    "frozen",
    "hidden",
    "wild",
)
KEY_NOUNS = (
    "elephant",
    "harbor",
    "falcon",
    "meadow",
    "lantern",
    "canyon",
    "otter",
    "glacier",
    "violin",
    "comet",
    "orchid",
    "badger",
)
