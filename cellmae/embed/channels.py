"""Map a screen's named channels onto the channels a model takes.

Channels are matched by name (case-insensitive), never by position: a 5-channel Cell Painting
screen and a 6-channel RxRx screen share DNA/ER/RNA/Mito but not in the same slots. A
channel-agnostic model (``expected_channels is None``, e.g. a CA-MAE) takes any subset in any
order; a fixed-channel model needs every channel it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cellmae.data.schema import validate_channels
from cellmae.models.handcrafted import find_dna_channel  # noqa: F401 - re-exported for the embed pipeline


@dataclass(frozen=True)
class ChannelPlan:
    """Which planes of a field go into the model, in the model's order, and under which names."""

    indices: tuple[int, ...]  # positions in the screen's image stack
    names: tuple[str, ...]  # names handed to the model (the model's spelling when it has one)
    dropped: tuple[str, ...]  # screen channels the model does not use

    @property
    def identity(self) -> bool:
        """True when the field can go to the model unchanged (no selection or reordering)."""
        return not self.dropped and self.indices == tuple(range(len(self.indices)))


def _lookup(names: Sequence[str]) -> dict[str, int]:
    return {n.casefold(): i for i, n in enumerate(names)}


def parse_channel_list(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Turn ``"DNA,ER,RNA"`` (CLI form) or a sequence into a tuple of names; None stays None."""
    if text is None:
        return None
    if isinstance(text, str):
        items = [t.strip() for t in text.split(",")]
        if not any(items):
            return None
        return validate_channels(items, source="--channels")
    return validate_channels(tuple(text), source="channels")


def plan_channels(
    screen_channels: Sequence[str],
    expected: Sequence[str] | None,
    *,
    requested: Sequence[str] | None = None,
) -> ChannelPlan:
    """Return the channel plan for a screen and a model.

    ``expected`` is the model's ``expected_channels`` (None for channel-agnostic models);
    ``requested`` is an optional user choice of screen channels (subset and order). Raises
    ValueError naming the expected and the given channels when the model cannot be fed.
    """
    screen_channels = validate_channels(screen_channels, source="screen channels")
    where = _lookup(screen_channels)
    if requested is not None:
        missing = [c for c in requested if c.casefold() not in where]
        if missing:
            raise ValueError(
                f"requested channel(s) {missing} are not in the screen; the screen has {list(screen_channels)}"
            )
        pool = tuple(screen_channels[where[c.casefold()]] for c in requested)
    else:
        pool = tuple(screen_channels)

    if expected is None:
        indices = tuple(where[c.casefold()] for c in pool)
        names = pool
    else:
        expected = tuple(expected)
        available = _lookup(pool)
        missing = [c for c in expected if c.casefold() not in available]
        if missing:
            raise ValueError(
                f"the model expects channels {list(expected)} but the screen gives {list(pool)} "
                f"(missing: {missing}); use a channel-agnostic model (CA-MAE) or a screen with those channels"
            )
        indices = tuple(where[c.casefold()] for c in expected)
        names = expected
    used = {screen_channels[i] for i in indices}
    dropped = tuple(c for c in screen_channels if c not in used)
    return ChannelPlan(indices=indices, names=tuple(names), dropped=dropped)
