"""The demo's experiments train on the same tiny shard set as the training tests."""

from ..train.conftest import sim_shards  # noqa: F401  (a session fixture, shared)
