import pytest

from experiments.masbench.generator import (
    AXES,
    SEPARATOR,
    components,
    generate,
    generate_split,
    longest_chain,
    max_in_degree,
)
from experiments.masbench.scorer import equivalent, extract_boxed, score


@pytest.mark.parametrize("level", [2, 7, 12])
def test_each_axis_has_the_structure_it_claims(level):
    d = generate("depth", level, 0)
    assert longest_chain(d.nodes) == level and len(d.answers) == 1
    h = generate("horizon", level, 0)
    assert len(h.answers) == level and longest_chain(h.nodes) == level + 1 and SEPARATOR in h.gold
    b = generate("breadth", level, 0)
    assert max_in_degree(b.nodes) == level and len(b.answers) == 1
    p = generate("parallel", level, 0)
    assert components(p.nodes) == level and len(p.answers) == level
    r = generate("robustness", level, 0)
    assert len(r.answers) == level and "Unverified note" in r.question and "also keeps" in r.question


@pytest.mark.parametrize("axis", AXES)
def test_answers_follow_from_the_graph(axis):
    prob = generate(axis, 5, 3)
    vals = {}
    for n in prob.nodes:
        ps = [vals[q] for q in n.parents]
        vals[n.id] = {
            "given": lambda: n.value,
            "sum": lambda: sum(ps),
            "add": lambda: ps[0] + n.const,
            "sub": lambda: ps[0] - n.const,
            "mul": lambda: ps[0] * n.const,
        }[n.op]()
        assert vals[n.id] == n.value and n.value >= 0
    assert prob.answers == tuple(str(vals[t]) for t in prob.targets)
    for n in prob.nodes:  # every fact needed to solve it is stated
        assert n.owner in prob.question


def test_generation_is_seeded_and_validated():
    assert generate("depth", 4, 1) == generate("depth", 4, 1)
    assert generate("depth", 4, 1).question != generate("depth", 4, 2).question
    assert len(generate_split(["depth", "parallel"], [2, 3], 2)) == 8
    with pytest.raises(ValueError, match="level"):
        generate("depth", 13, 0)
    with pytest.raises(ValueError, match="axis"):
        generate("width", 3, 0)


def test_boxed_extraction_and_equivalence():
    assert extract_boxed(r"a \boxed{\frac{1}{2}} b \boxed{ 1,000 } \boxed{x") == [r"\frac{1}{2}", "1,000"]
    assert equivalent(r"\frac{1}{2}", "0.5") and equivalent("1,000", "1000.0") and equivalent("$7$", "7")
    assert equivalent(r"\text{12}", "12") and not equivalent("12", "13")


def test_score_requires_count_and_order():
    assert score(r"\boxed{3} then \boxed{5}", ["3", "5"])["correct"]
    swapped = score(r"\boxed{5} \boxed{3}", ["3", "5"])
    assert not swapped["correct"] and swapped["partial"] == 0.0
    extra = score(r"\boxed{3} \boxed{5} \boxed{9}", ["3", "5"])
    assert not extra["correct"] and extra["matched"] == [True, True] and not extra["count_ok"]
    assert score("no box", ["3"])["n_pred"] == 0
