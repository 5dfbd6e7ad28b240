from __future__ import annotations

import json

import pytest

from compute.ml.corpora import (
    CorpusError,
    brown_detag,
    corpus_file_check,
    count_tokens,
    demo_corpus,
    is_eval_window,
    iter_texts,
    token_windows,
)
from tests.ml_factories import byte_level_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return byte_level_tokenizer()


def test_brown_detag_strips_tags_and_rejoins_punctuation():
    line = "``/`` The/at moon/nn (/( e.g./rb ,/, Dicke/np )/) isn't/bez* cold/jj ''/'' ./."
    assert brown_detag(line) == '"The moon (e.g., Dicke) isn\'t cold".'


def test_windows_are_the_token_stream_cut_in_pieces(tokenizer):
    texts = ["alpha beta gamma", "delta epsilon", "zeta eta theta iota kappa"]
    windows = list(token_windows(texts, tokenizer, context_size=8, split="all"))
    stream = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert all(len(w) == 8 and w[0] == tokenizer.bos_token_id for w in windows)
    body = [t for w in windows for t in w[1:]]
    assert len(windows) == len(stream) // 7
    assert body == stream[: len(body)]


def test_split_is_deterministic_disjoint_and_complete(tokenizer):
    texts = [f"document number {i} says something about topic {i % 7}." for i in range(200)]
    everything = list(token_windows(texts, tokenizer, context_size=16))
    train = list(token_windows(texts, tokenizer, context_size=16, split="train", eval_fraction=0.2))
    evaluation = list(token_windows(texts, tokenizer, context_size=16, split="eval", eval_fraction=0.2))
    assert len(train) + len(evaluation) == len(everything)
    assert sorted(map(tuple, train + evaluation)) == sorted(map(tuple, everything))
    assert 0.1 < len(evaluation) / len(everything) < 0.3
    assert all(is_eval_window(w, 0.2) for w in evaluation)
    assert train == list(token_windows(texts, tokenizer, context_size=16, split="train", eval_fraction=0.2))


def test_count_tokens_matches_brute_force(tokenizer):
    texts = ["one two three four five", "six seven", "eight nine ten eleven twelve thirteen"]
    counts = count_tokens(texts, tokenizer, context_size=6, eval_fraction=0.5)
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
    assert counts.documents == 3
    assert counts.tokens == tokens
    assert counts.train_windows + counts.eval_windows == tokens // 5
    evaluation = list(token_windows(texts, tokenizer, context_size=6, split="eval", eval_fraction=0.5))
    assert counts.eval_windows == len(evaluation)


def test_count_tokens_reads_each_document_once(tokenizer):
    calls = []

    def counting(text, **kwargs):
        calls.append(text)
        return tokenizer(text, **kwargs)

    counting.bos_token_id, counting.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    texts = [f"document {i} about the moon" for i in range(30)]
    assert count_tokens(texts, counting, context_size=8).documents == 30
    assert calls == texts  # tokenized once each (a corpus's count is a pass over all of it)


def test_local_files_of_every_format(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph\nstill first.\n\nSecond paragraph.\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    (tmp_path / "c.csv").write_text('id,text\n1,"from, csv"\n2,\n', encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["from parquet", None]}), tmp_path / "d.parquet")
    texts = list(iter_texts("files", str(tmp_path)))
    assert texts == [
        "First paragraph\nstill first.",
        "Second paragraph.",
        "from jsonl",
        "two",
        "from, csv",
        "from parquet",
    ]
    assert list(iter_texts("files", str(tmp_path / "*.csv"))) == ["from, csv"]


def test_file_kinds_are_told_by_suffix_in_any_case(tmp_path):
    """`notes.TXT`, `rows.JSONL`, `t.CSV`, `p.Parquet` are read as their kinds, alone, in a folder and by a glob."""
    (tmp_path / "a.TXT").write_text("Upper txt.\n\nSecond.\n", encoding="utf-8")
    (tmp_path / "b.JSONL").write_text(json.dumps({"text": "upper jsonl"}) + "\n", encoding="utf-8")
    (tmp_path / "c.Csv").write_text("text\nupper csv\n", encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["upper parquet"]}), tmp_path / "d.PARQUET")
    (tmp_path / "e.PDF").write_bytes(b"%PDF")  # not a corpus file: left out of the folder
    expected = ["Upper txt.", "Second.", "upper jsonl", "upper csv", "upper parquet"]
    assert list(iter_texts("files", str(tmp_path))) == expected
    assert list(iter_texts("files", str(tmp_path / "*"))) == expected
    assert list(iter_texts("files", str(tmp_path / "b.JSONL"))) == ["upper jsonl"]
    assert corpus_file_check(tmp_path / "a.TXT") == 2
    with pytest.raises(CorpusError, match="corpus files must be"):
        list(iter_texts("files", str(tmp_path / "e.PDF")))


def test_bad_files_say_what_to_fix(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        list(iter_texts("files", str(tmp_path / "missing.txt")))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8"):
        list(iter_texts("files", str(tmp_path / "latin1.txt")))
    (tmp_path / "x.csv").write_text("id,body\n1,hello\n")
    with pytest.raises(CorpusError, match="no column 'text'"):
        list(iter_texts("files", str(tmp_path / "x.csv")))
    with pytest.raises(CorpusError, match="Unknown demo corpus"):
        demo_corpus("nope")
    with pytest.raises(CorpusError, match="make data"):
        list(iter_texts("demo", "web", data_dir=tmp_path))


def test_demo_corpora_are_real_english():
    web = list(iter_texts("demo", "web", max_documents=3))
    assert len(web) == 3 and all(len(t) > 10_000 for t in web)
    science = list(iter_texts("demo", "science", max_documents=50))
    assert len(science) == 50
    joined = " ".join(science)
    assert "/nn" not in joined and " the " in joined
    assert "moon" in joined  # cj01 is about the radio emission of the moon and planets
