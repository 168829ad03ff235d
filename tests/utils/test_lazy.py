"""Lazy package exports: names resolve on first use, unknown names raise AttributeError with the package."""

import pytest

from cellmae.utils.lazy import lazy_getattr


def test_lazy_getattr_resolves_exports_and_names_the_package() -> None:
    getattr_ = lazy_getattr("pkg", {"dumps": "json"})
    import json

    assert getattr_("dumps") is json.dumps
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'loads'"):
        getattr_("loads")


def test_stage_packages_export_lazily() -> None:
    import cellmae.embed
    import cellmae.models
    from cellmae.embed.io import read_embeddings
    from cellmae.models.registry import create_model

    assert cellmae.models.create_model is create_model
    assert cellmae.embed.read_embeddings is read_embeddings
    with pytest.raises(AttributeError, match="cellmae.models"):
        cellmae.models.not_an_export  # noqa: B018
