"""resolvers.platform.memo.cached: a read-once attribute (the hot path's replacement for functools.cached_property)."""

from __future__ import annotations

from dataclasses import dataclass

from resolvers.platform.memo import cached


@dataclass(frozen=True)
class _Thing:
    n: int

    @cached
    def doubled(self) -> int:
        """Twice n."""
        _Thing.calls += 1
        return self.n * 2

    calls = 0


def test_a_cached_attribute_is_computed_once_per_instance_and_kept_out_of_equality() -> None:
    _Thing.calls = 0
    one, other = _Thing(2), _Thing(2)
    assert (one.doubled, one.doubled, one.doubled) == (4, 4, 4)
    assert _Thing.calls == 1 and one.__dict__["doubled"] == 4
    assert one == other and hash(one) == hash(other)  # other has not computed it yet
    assert other.doubled == 4 and _Thing.calls == 2
    assert isinstance(_Thing.doubled, cached) and _Thing.doubled.__doc__ == "Twice n."
