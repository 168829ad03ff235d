import numpy as np
import pandas as pd
import pytest

from cellmae.data import schema as S


def _meta() -> pd.DataFrame:
    return pd.DataFrame(
        {
            S.EXPERIMENT: ["e1", "e1"],
            S.PLATE: ["1", "1"],
            S.WELL: ["B02", "B03"],
            S.SITE: [1, 1],
            S.PERTURBATION: ["EMPTY", "TP53"],
            S.PERTURBATION_TYPE: ["CONTROL", "CRISPR"],
            S.IS_CONTROL: ["true", "0"],
        }
    )


def test_validate_normalises_types() -> None:
    out = S.validate_metadata(_meta())
    assert out[S.IS_CONTROL].tolist() == [True, False]
    assert out[S.SITE].dtype.kind == "i"


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [(S.WELL, "ZZ999", "column Metadata_Well"), (S.PERTURBATION_TYPE, "MAGIC", "MAGIC"), (S.IS_CONTROL, "maybe", "boolean")],
)
def test_validate_names_file_row_and_column(column: str, value: str, needle: str) -> None:
    df = _meta()
    df.loc[1, column] = value
    with pytest.raises(S.SchemaError, match=rf"meta.csv: row 2.*{needle}"):
        S.validate_metadata(df, source="meta.csv")


def test_missing_column_and_duplicates() -> None:
    with pytest.raises(S.SchemaError, match="missing required"):
        S.validate_metadata(_meta().drop(columns=[S.PLATE]))
    dup = pd.concat([_meta(), _meta().iloc[[0]]], ignore_index=True)
    with pytest.raises(S.SchemaError, match="row 3: duplicated"):
        S.validate_metadata(dup)


def test_embeddings_frame_contract() -> None:
    df = S.embeddings_frame(S.validate_metadata(_meta()), np.ones((2, 3)))
    assert S.feature_columns(df) == ["feature_0000", "feature_0001", "feature_0002"]
    assert df[S.feature_columns(df)].dtypes.unique().tolist() == [np.float32]
    assert S.metadata_columns(df)[0] == S.EXPERIMENT
