"""`nanorec embed text` with a tiny random sentence-transformers model built offline here."""
import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from nanorec.content.tables import load_table  # noqa: E402
from nanorec.commands.embed import main  # noqa: E402
from nanorec.content.text import _clean, read_texts  # noqa: E402

WORDS = ["red", "blue", "lipstick", "shampoo", "soft", "brush", "nail", "polish", "gel", "cream"]


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory):
    """A 1-layer BERT with a word-level vocabulary, wrapped as Transformer + mean pooling."""
    from sentence_transformers import SentenceTransformer
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("st")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    bert = root / "bert"
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(bert)
    BertModel(BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(bert)
    word = Transformer(str(bert), max_seq_length=32)
    dim = (word.get_embedding_dimension() if hasattr(word, "get_embedding_dimension")
           else word.get_word_embedding_dimension())
    model = SentenceTransformer(modules=[word, Pooling(dim, "mean")])
    out = root / "model"
    model.save(str(out))
    return str(out)


def test_read_texts_joins_fields_and_lists(tmp_path):
    p = tmp_path / "meta.csv"
    p.write_text('parent_asin,title,features\nA,red lipstick,"[""soft"", ""gel""]"\nB,,\nC,blue brush,\n')
    keys, texts = read_texts(str(p), ["title", "features"])
    assert keys == ["A", "C"] and texts == ["red lipstick. soft gel", "blue brush"]
    assert _clean("['a', 'b']") == "a b"


def test_clean_survives_deep_nesting():
    # json raises RecursionError near 1000 levels, ast a SyntaxError at 200; _clean
    # itself walks lists with a stack, so parsed or kept as text, nothing escapes
    assert _clean("[" * 1000 + "]" * 1000).startswith("[[[")          # unparseable: kept as text
    assert _clean("[" * 100 + '"red"' + "]" * 100) == "red"             # parsed, flattened
    deep = ["gel"]
    for _ in range(10_000):
        deep = [deep]
    assert _clean(deep) == "gel"                                        # a parquet list column, say
    assert _clean(["a", "", None, '["b", ["c"]]']) == "a b c"


def test_read_texts_with_a_deeply_nested_field(tmp_path):
    p = tmp_path / "meta.csv"
    nested = "[" * 1000 + "]" * 1000
    p.write_text(f'parent_asin,title,features\nA,red lipstick,"{nested}"\nB,blue brush,soft\n')
    keys, texts = read_texts(str(p), ["title", "features"])
    assert keys == ["A", "B"] and texts[1] == "blue brush. soft"


def test_text_end_to_end(st_dir, tmp_path, capsys):
    folder = tmp_path / "challenge"
    folder.mkdir()
    (folder / "train.csv").write_text("user_id,item_id,rating,timestamp\n0,0,5,1\n0,1,4,2\n1,2,3,3\n")
    (folder / "id_mappings.json").write_text(json.dumps({"item_mapping": {"A": 0, "B": 1, "C": 2}}))
    (folder / "item_metadata.csv").write_text(
        "parent_asin,title,store\nA,red lipstick,soft\nB,red lipstick,soft\nC,nail polish gel,\nZ,cream,\n")
    out = str(tmp_path / "text.safetensors")
    rc = main(["text", "--model", st_dir, "--metadata", str(folder / "item_metadata.csv"), "--fields",
               "title,store", "--items", str(folder), "--out", out, "--no-progress", "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "skipped 1 not in the vocabulary (e.g. Z)" in text and "3 of 3 items (100.0%)" in text
    ids, vecs = load_table(out)
    assert ids.tolist() == [0, 1, 2] and vecs.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vecs[0], vecs[1], atol=1e-6)  # same text, same vector
    assert float(vecs[0] @ vecs[2]) < 0.9999
