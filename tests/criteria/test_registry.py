import pytest

from snipit_cli.criteria import Criterion, get_criterion, list_criteria, register_criterion
from snipit_cli.criteria.registry import _REGISTRY
from snipit_cli.errors import UsageError


def test_builtin_methods_are_registered_with_summaries():
    names = [c.name for c in list_criteria()]
    assert names[:4] == ["snip", "snip-it", "magnitude", "random"]
    assert all(c.summary for c in list_criteria())
    assert get_criterion("snip-it").iterative and not get_criterion("snip").iterative


def test_pattern_filter():
    assert [c.name for c in list_criteria("snip*")] == ["snip", "snip-it"]


def test_unknown_method_lists_known_ones():
    with pytest.raises(UsageError, match="unknown method 'snipit'.*snip-it"):
        get_criterion("snipit")


def test_registering_a_name_twice_warns():
    class A(Criterion):
        name = "dup-test"
        summary = "a"

        def score(self, ctx):
            return {}

    class B(A):
        summary = "b"

    try:
        register_criterion(A)
        with pytest.warns(UserWarning, match="registered twice"):
            register_criterion(B)
        assert get_criterion("dup-test") is B
    finally:
        _REGISTRY.pop("dup-test", None)


def test_criterion_must_implement_score():
    class Incomplete(Criterion):
        name = "incomplete"
        summary = "x"

    with pytest.raises(TypeError):
        Incomplete()
