"""Channel mapping by name: agnostic models take any subset, fixed models need their channels."""

from __future__ import annotations

import pytest

from cellmae.data.schema import CELLPAINTING_CHANNELS, RXRX_CHANNELS
from cellmae.embed.channels import find_dna_channel, parse_channel_list, plan_channels


def test_agnostic_model_takes_all_screen_channels_in_screen_order():
    plan = plan_channels(CELLPAINTING_CHANNELS, None)
    assert plan.names == CELLPAINTING_CHANNELS
    assert plan.indices == (0, 1, 2, 3, 4)
    assert plan.identity and plan.dropped == ()


def test_agnostic_model_with_requested_subset_reorders_and_drops():
    plan = plan_channels(RXRX_CHANNELS, None, requested=("mito", "DNA"))
    assert plan.names == ("Mito", "DNA")  # the screen's spelling
    assert plan.indices == (4, 0)
    assert set(plan.dropped) == {"ER", "Actin", "RNA", "GolgiPM"}
    assert not plan.identity


def test_fixed_model_maps_by_name_not_position():
    shuffled = ("GolgiPM", "dna", "Mito", "ER", "RNA", "Actin", "Brightfield")
    plan = plan_channels(shuffled, RXRX_CHANNELS)
    assert plan.names == RXRX_CHANNELS
    assert [shuffled[i].casefold() for i in plan.indices] == [c.casefold() for c in RXRX_CHANNELS]
    assert plan.dropped == ("Brightfield",)


def test_fixed_model_missing_channels_names_expected_and_given():
    with pytest.raises(ValueError) as err:
        plan_channels(CELLPAINTING_CHANNELS, RXRX_CHANNELS)
    msg = str(err.value)
    assert "'Actin'" in msg and "'GolgiPM'" in msg  # missing ones
    assert str(list(RXRX_CHANNELS)) in msg and str(list(CELLPAINTING_CHANNELS)) in msg


def test_requested_channel_not_in_screen_is_named():
    with pytest.raises(ValueError, match="Tubulin"):
        plan_channels(RXRX_CHANNELS, None, requested=("DNA", "Tubulin"))


def test_parse_channel_list_and_duplicates():
    assert parse_channel_list("DNA, ER") == ("DNA", "ER")
    assert parse_channel_list(None) is None
    with pytest.raises(ValueError, match="duplicated"):
        parse_channel_list("DNA,DNA")


def test_find_dna_channel():
    assert find_dna_channel(("ER", "Hoechst")) == 1
    assert find_dna_channel(CELLPAINTING_CHANNELS) == 0
    assert find_dna_channel(("A", "B")) == 0
